"""A FAKE torch for control-flow smoke tests of benchmarks/gpu_check.py (no numerics; tests/test_gpu_check.py puts
it on PYTHONPATH of a subprocess only).
Tensors carry shape/dtype/memory_format only; ops check shapes and advance a simulated GPU clock.
Env knobs: FAKE_INT_MM_NN_FAIL=1 (row-major B refused like cuBLAS NOT_SUPPORTED), FAKE_GRAPH_FAIL=1,
FAKE_NO_L2ATTR=1, FAKE_NAME=..., FAKE_SLOW=seconds of host time added per op (budget tests)."""
import builtins, contextlib, math, os, time as _time

__version__ = "2.5.0+fake"

class _Ver: cuda = "12.4"
version = _Ver()

class dtype:
    def __init__(self, name, size): self.name, self.itemsize = name, size
    def __repr__(self): return f"torch.{self.name}"
float32 = dtype("float32", 4); float16 = dtype("float16", 2); int8 = dtype("int8", 1); int32 = dtype("int32", 4)
half = float16
globals()["float"] = float32  # torch.float alias, set after helpers

class memory_format:
    def __init__(self, n): self.n = n
    def __repr__(self): return self.n
contiguous_format = memory_format("contiguous_format"); channels_last = memory_format("channels_last")

class device:
    def __init__(self, s): self.type = s
    def __repr__(self): return f"device({self.type})"

_CLOCK = [0.0]   # simulated GPU time, ms
_CAPTURING = [False]
_CALLS = {}
def _tick(flops=0.0, nbytes=0.0, what="op"):
    _CALLS[what] = _CALLS.get(what, 0) + 1
    _CLOCK[0] += (3e-3 + flops / 400e12 * 1e3 + nbytes / 3e12 * 1e3)
    slow = builtins.float(os.environ.get("FAKE_SLOW", "0"))
    if slow: _time.sleep(slow)

class Tensor:
    def __init__(self, shape, dt=float32, fmt=contiguous_format, strides=None, dev="cuda"):
        self.shape = tuple(int(s) for s in shape); self.dtype = dt; self.fmt = fmt; self.dev = dev
        self._t = False  # a transposed view of a contiguous tensor
        assert all(s >= 0 for s in self.shape), self.shape
    def size(self, i=None): return self.shape if i is None else self.shape[i]
    def dim(self): return len(self.shape)
    @property
    def ndim(self): return len(self.shape)
    def numel(self): return math.prod(self.shape)
    def add_(self, v): _tick(nbytes=8 * self.numel(), what="add_"); return self
    def copy_(self, o):
        assert o.shape == self.shape, (o.shape, self.shape)
        _tick(nbytes=self.numel() * self.dtype.itemsize * 2, what="copy_"); return self
    def to(self, *a, memory_format=None, dtype=None, **k):
        t = Tensor(self.shape, dtype or self.dtype, memory_format or self.fmt)
        if memory_format is channels_last: assert self.dim() == 4, "channels_last needs 4-D"
        return t
    def t(self):
        assert self.dim() == 2; r = Tensor(self.shape[::-1], self.dtype); r._t = not self._t; return r
    def __add__(self, o):
        assert o.shape == self.shape, ("add", self.shape, o.shape); _tick(nbytes=3 * self.numel() * 2, what="add"); return Tensor(self.shape, self.dtype, self.fmt)
    def __matmul__(self, o): return mm(self, o)
    def half(self): return self.to(dtype=float16)
    def is_contiguous(self, memory_format=contiguous_format): return not self._t

def _shape(args):
    if len(args) == 1 and isinstance(args[0], (tuple, list)): return tuple(args[0])
    return tuple(args)
def zeros(*s, device=None, dtype=float32): return Tensor(_shape(s), dtype)
def empty(*s, device=None, dtype=float32): return Tensor(_shape(s), dtype)
def empty_like(t): return Tensor(t.shape, t.dtype, t.fmt)
def randn(*s, device=None, dtype=float32):
    assert dtype in (float32, float16), dtype; return Tensor(_shape(s), dtype)
def randint(lo, hi, size, device=None, dtype=None):
    assert dtype is not None and isinstance(size, tuple); return Tensor(size, dtype)
def relu(x): _tick(nbytes=2 * x.numel() * 2, what="relu"); return Tensor(x.shape, x.dtype, x.fmt)

def mm(a, b):
    assert a.dim() == 2 and b.dim() == 2 and a.shape[1] == b.shape[0], ("mm", a.shape, b.shape)
    assert a.dtype is b.dtype and a.dtype in (float32, float16), (a.dtype, b.dtype)
    m, k = a.shape; n = b.shape[1]
    _tick(flops=2.0 * m * n * k * (4 if a.dtype is float32 and not backends.cuda.matmul.allow_tf32 else 1), what="mm")
    return Tensor((m, n), a.dtype)
matmul = mm

def _int_mm(a, b):
    # constraints of aten/src/ATen/native/cuda/Blas.cpp _int_mm_out_cuda
    if not (a.dim() == 2 and b.dim() == 2): raise RuntimeError("Expected 2-D")
    if a.dtype is not int8 or b.dtype is not int8: raise RuntimeError("expected int8")
    if not a.shape[0] > 16: raise RuntimeError(f"self.size(0) needs to be greater than 16, but got {a.shape[0]}")
    if not (a.shape[1] > 0 and a.shape[1] % 8 == 0): raise RuntimeError("self.size(1) multiple of 8")
    if a.shape[1] != b.shape[0]: raise RuntimeError("self.size(1) needs to match mat2.size(0)")
    if not (b.shape[1] > 0 and b.shape[1] % 8 == 0): raise RuntimeError("mat2.size(1) multiple of 8")
    if os.environ.get("FAKE_INT_MM_NN_FAIL") and not b._t:
        raise RuntimeError("CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling cublasLtMatmul(...)\nmore")
    m, k = a.shape; n = b.shape[1]
    _tick(flops=2.0 * m * n * k / 2, what="_int_mm"); return Tensor((m, n), int32)

class _NoGrad(contextlib.ContextDecorator):
    def __enter__(self): return self
    def __exit__(self, *a): return False
def no_grad(): return _NoGrad()

# ---- cuda
class _Props:
    def __init__(self):
        self.name = os.environ.get("FAKE_NAME", "NVIDIA H100 80GB HBM3"); self.total_memory = 85045460992
        self.multi_processor_count = 132; self.major, self.minor = 9, 0
        if not os.environ.get("FAKE_NO_L2ATTR"): self.L2_cache_size = 52428800

class _Event:
    def __init__(self, enable_timing=False): self.t = None; self.timing = enable_timing
    def record(self, stream=None): self.t = _CLOCK[0]
    def synchronize(self): assert self.t is not None
    def elapsed_time(self, other):
        assert self.timing and other.timing and self.t is not None and other.t is not None
        return other.t - self.t   # ms

class _Stream:
    def wait_stream(self, s): assert isinstance(s, _Stream)
    def synchronize(self): pass

class _CUDAGraph:
    def __init__(self): self.ops = None; self.c0 = None
    def replay(self):
        assert self.ops is not None, "replay before capture"
        _CLOCK[0] += self.ops * 0.7

class _graph:
    def __init__(self, g, pool=None, stream=None): self.g = g
    def __enter__(self):
        if os.environ.get("FAKE_GRAPH_FAIL"): raise RuntimeError("operation not permitted when stream is capturing")
        self.c0 = _CLOCK[0]; _CAPTURING[0] = True
    def __exit__(self, *a):
        _CAPTURING[0] = False; self.g.ops = _CLOCK[0] - self.c0; _CLOCK[0] = self.c0; return False

class _Cuda:
    Event = _Event; CUDAGraph = _CUDAGraph; graph = _graph
    def is_available(self): return True
    def get_device_properties(self, i):
        assert i == 0 or isinstance(i, device); return _Props()
    def synchronize(self, d=None): pass
    def _sleep(self, cycles): _CLOCK[0] += cycles / 1.5e9 * 1e3 * 0  # the spin runs before the first event
    def Stream(self): return _Stream()
    def current_stream(self): return _Stream()
    @contextlib.contextmanager
    def stream(self, s):
        assert isinstance(s, _Stream); yield
    def device_count(self): return 1
    def get_device_capability(self, d=None): return (9, 0)
cuda = _Cuda()

class _Flag:
    pass
class _Backends:
    def __init__(self):
        self.cuda = _Flag(); self.cuda.matmul = _Flag(); self.cuda.matmul.allow_tf32 = False
        self.cudnn = _Flag(); self.cudnn.benchmark = False; self.cudnn.allow_tf32 = True
        self.cudnn.version = lambda: 90100
backends = _Backends()

from . import nn  # noqa: E402
