"""``import hugectr``: HugeCTR 3.0's module surface over hugectr_lab."""

import hugectr
import hugectr_lab
from hugectr_lab.config import SolverParser, solver_parser_helper
from hugectr_lab.optim import LearningRateScheduler
from hugectr_lab.session import Session


def test_names_of_hugectr_30():
    assert hugectr.Session is Session
    assert hugectr.solver_parser_helper is solver_parser_helper
    assert hugectr.SolverParser is SolverParser
    assert hugectr.LearningRateScheduler is LearningRateScheduler
    assert hugectr.DataReader32.__name__ == "DataReader32" and hugectr.DataReader64.__name__ == "DataReader64"
    assert hugectr.__version__ == "3.0.0" and hugectr_lab.__version__ != hugectr.__version__


def test_enums_have_hugectr_members_in_order():
    assert [m.name for m in hugectr.Check_t] == ["Sum", "Non"]
    assert [m.name for m in hugectr.Update_t] == ["Local", "Global", "LazyGlobal"]
    assert [m.name for m in hugectr.Optimizer_t] == ["Adam", "MomentumSGD", "Nesterov", "SGD"]
    assert [m.name for m in hugectr.Embedding_t] == ["DistributedSlotSparseEmbeddingHash",
                                                     "LocalizedSlotSparseEmbeddingHash",
                                                     "LocalizedSlotSparseEmbeddingOneHot"]
    assert hugectr.Error_t.Success.value == 0 and hugectr.Error_t.WrongInput.value == 5
    assert len(hugectr.Layer_t) == 22 and hugectr.Layer_t.WeightMultiply.name == "WeightMultiply"
    assert [m.name for m in hugectr.MetricsType] == ["AUC", "AverageLoss"]
    param = hugectr.DataReaderSparseParam(type=hugectr.DataReaderSparse_t.Distributed, max_feature_num=30,
                                          max_nnz=1, slot_num=26)
    assert param.slot_num == 26


def test_solver_parser_helper_singular_keyword():
    solver = hugectr.solver_parser_helper(sparse_opt_states_file=["a", "b"], embedding_files=["x", "y"])
    assert solver.sparse_opt_states_files == ["a", "b"] and solver.embedding_files == ["x", "y"]
