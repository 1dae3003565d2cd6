"""What-if questions about a model's compression, priced on a target before anything is compressed.

    from latency import Estimator
    import latency.whatif as whatif

    plan = whatif.prepare(Estimator("x86-avx512-ort"), "resnet50.onnx")   # or Estimator(...).plan(model),
                                                                          # or Estimator(...).prepare(model)
    plan.evaluate({"precision": "int8", "fp32_nodes": ["/Conv"]}).total_ms
    plan.evaluate_batch(code_matrix)          # numpy array of ms, one per candidate
    plan.nodes, plan.sensitivity(), plan.pareto(scores, budget_ms=5.0)
    plan.verify(choice)                       # the choice's model rewritten whole and estimated: the reference

``rewrite`` mirrors the compression tools on the graph (quantize_static QDQ, quantize_dynamic, channel
pruning), ``tools`` runs the fp16 and 4-bit weight-only tools themselves on the model, ``structure``
names what a choice can change and who owns each kernel, ``tables`` learns from whole-model probes and
evaluates, ``plan`` holds the public :class:`Plan`, ``present`` what the
``latency whatif`` command prints. Nothing is imported until used.
"""

__all__ = ["prepare", "Plan", "WhatIf", "ParetoFront", "InvalidChoice"]


def prepare(estimator, model, shapes=None, batch=None, warm: int = 8):
    """Prepare ``model`` (a path, bytes, ModelProto or loaded :class:`~latency.graph.Graph`) for what-if
    questions on ``estimator``'s target: parse, infer shapes, fuse and price the plain model and
    the first precision family (int8) with ``warm`` random mixes; the other families are prepared when
    first asked about, and so is any local situation no probe has seen yet.
    ``warm``: random mixed candidates probed up front (each one full fusion of the rewritten model)."""
    from ..gcpause import gc_paused
    from ..graph import Graph, load_graph
    from .plan import Plan

    estimator.prepare()
    with gc_paused():
        graph = model if isinstance(model, Graph) else load_graph(model, shapes=shapes, batch=batch)
        plan = Plan(estimator, graph, warm=warm)
    # fp16 / int4-weight are priced by converting the model itself with the tool, later: a ModelProto is
    # copied now (36 ms for ResNet-50), so a caller that changes it afterwards does not change the answers
    src = None if isinstance(model, Graph) else model
    if src is not None and not isinstance(src, (str, bytes, bytearray)) and hasattr(src, "CopyFrom"):
        src = type(src)()
        src.CopyFrom(model)
    plan._source = (src, shapes, batch)
    return plan


def __getattr__(name):
    if name in ("Plan", "WhatIf", "ParetoFront", "InvalidChoice"):
        from . import plan

        return getattr(plan, name)
    raise AttributeError(f"module 'latency.whatif' has no attribute {name!r}")
