"""The TrainingDashboard is a view over the engine's one loop (``hugectr_lab.fit.Trainer``): its buttons
call the trainer, its numbers are the trainer's, and the widgets hold no training or evaluation loop."""

import ast
from pathlib import Path

import hugectr_lab.widgets as widgets_package
from hugectr_lab.events import IterationEnd
from hugectr_lab.fit import Trainer
from hugectr_lab.optim import LearningRateScheduler
from hugectr_lab.widgets import TrainingDashboard

from test_training_dashboard import TIMEOUT, make_session

# Session calls that train, evaluate, save or feed data: only the trainer makes them
LOOP_CALLS = {"train", "eval", "evaluation", "copy_weights_for_evaluation", "get_eval_metrics", "set_learning_rate",
              "download_params_to_files", "start_data_reading", "train_step", "stage_batch", "read_a_batch",
              "get_next"}


def test_the_dashboards_results_are_the_trainers_on_the_same_seed(workdir):
    def scheduler():
        return LearningRateScheduler(0.01, warmup_steps=3, decay_start=6, decay_steps=3, end_lr=1e-4)

    sess = make_session(workdir)
    dash = TrainingDashboard(sess, lr_scheduler=scheduler(), max_iter=10, eval_interval=4)
    assert isinstance(dash.trainer, Trainer) and dash.lock is sess.lock
    dash.start()
    assert dash.join(TIMEOUT) and dash.state == "finished"
    dash.eval_button.click()                      # no loop: the trainer evaluates at once

    ref = make_session(workdir)
    losses = []
    ref.events.subscribe(lambda e: isinstance(e, IterationEnd) and losses.append(e.loss))
    trainer = Trainer(ref, scheduler(), max_iter=10, eval_interval=4)
    result = trainer.run()
    final = trainer.evaluate()
    assert [h["loss"] for h in dash.history] == losses
    assert result.evaluations[-1] == (10, final)
    assert [(e["iteration"], e["metrics"]) for e in dash.eval_history] == [(i, dict(m)) for i, m in result.evaluations]
    # the dashboard's evaluation is Session.evaluation's: the rewound first max_eval_batches batches
    ref.copy_weights_for_evaluation()
    assert dict(ref.evaluation()) == dash.eval_history[-1]["metrics"]
    dash.close()


def test_no_training_or_evaluation_loop_lives_in_the_widgets():
    found = []
    for path in sorted(Path(widgets_package.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LOOP_CALLS:
                found.append(f"{path.name}:{node.lineno} .{node.func.attr}()")
            if isinstance(node, ast.Attribute) and node.attr == "Thread":
                found.append(f"{path.name}:{node.lineno} a thread of its own")
    # the EmbeddingInspector scans training batches with a reader of its own (read_a_batch) to count
    # key frequencies; that reads data, it does not train
    assert [f for f in found if not f.startswith("embedding_inspector.py") or "read_a_batch" not in f] == []
