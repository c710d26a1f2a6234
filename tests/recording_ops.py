"""A ``backend.ops`` stand-in for tests that check which ops a step calls (monkeypatch it onto a Backend)."""


class RecordingOps:
    """Forwards every op to ``ops`` (a Backend's op table) and records its name and positional arguments."""

    def __init__(self, ops):
        self._ops, self.calls = ops, []   # calls: (name, args) in call order

    def __getattr__(self, name):
        op = getattr(self._ops, name)

        def call(*args, **kwargs):
            self.calls.append((name, args))
            return op(*args, **kwargs)
        return call

    def arguments(self, name):
        """The positional arguments of each call of op ``name``, in call order."""
        return [args for called, args in self.calls if called == name]
