"""Named errors. Every error message is one line that says what is wrong and what is valid."""


class LatencyError(Exception):
    """Base class: the CLI turns any of these into a one-line message and a non-zero exit."""


class UnknownTarget(LatencyError):
    def __init__(self, name, valid):
        super().__init__(f"unknown target {name!r}; valid targets: {', '.join(sorted(valid))}")


class UnknownOpKind(LatencyError):
    def __init__(self, name, valid):
        super().__init__(f"unknown op kind {name!r}; valid op kinds: {', '.join(sorted(valid))}")


class UnknownPlan(LatencyError):
    def __init__(self, name, valid):
        super().__init__(f"unknown plan {name!r}; valid plans: {', '.join(sorted(valid))}")


class EmptyPlan(LatencyError):
    """A plan (after --ops filtering) that names no configuration."""


class ModelError(LatencyError):
    """The ONNX file is missing, corrupt, truncated, not ONNX, or fails validation."""


class DynamicShapeError(LatencyError):
    """Some input dimensions have no value; the message names them and how to give them."""


class UnsupportedOp(LatencyError):
    """--strict and some nodes could not be priced."""


class StoreError(LatencyError):
    """The profiling database cannot be opened, is corrupt, or is not writable."""


class SchemaError(StoreError):
    """The database has a schema this version does not understand (newer, or not ours)."""


class MissingTable(LatencyError):
    """A profile or regressor file the target needs is not there."""


class RegressorError(LatencyError):
    """A regressor is used before fitting, or its feature schema does not match."""


class InvalidConfig(LatencyError):
    """A table key that does not parse, or kernel parameters no runtime could execute (stride 0, ...)."""


class ProfileError(LatencyError):
    """A profile's side file (context or overhead model JSON) is unreadable, truncated or tampered."""


class UnknownPrecision(LatencyError):
    """A builder precision (``--precision``) the target has no rule for; lists the ones it has."""

    def __init__(self, target, precision, valid):
        if valid:
            msg = f"target {target} has no rule for precision {precision!r}; valid precisions: {', '.join(valid)}"
        else:
            msg = (f"--precision is not supported on target {target} yet: on onnxruntime it would mean quantizing the "
                   f"model (onnxruntime.quantization), which is not implemented; quantize the model and estimate it "
                   f"as it is stored")
        super().__init__(msg)
