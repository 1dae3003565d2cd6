import torch as _t
from . import functional  # noqa

class Module:
    def __init__(self): self._mods = []
    def __setattr__(self, k, v):
        object.__setattr__(self, k, v)
        if isinstance(v, Module) and k != "_mods": self.__dict__.setdefault("_mods", []).append(v)
    def to(self, *a, memory_format=None, **k):
        for m in self._mods: m.to(*a, memory_format=memory_format, **k)
        if memory_format is not None: self._fmt = memory_format
        return self
    def eval(self):
        for m in self._mods: m.eval()
        self.training = False; return self
    def __call__(self, *a, **k): return self.forward(*a, **k)

class Conv2d(Module):
    def __init__(self, cin, cout, k, stride=1, padding=0, bias=True):
        super().__init__(); self.cin, self.cout, self.k, self.s, self.p = cin, cout, k, stride, padding
    def forward(self, x):
        w = _t.Tensor((self.cout, self.cin, self.k, self.k), x.dtype)
        return functional.conv2d(x, w, stride=self.s, padding=self.p)
class BatchNorm2d(Module):
    def __init__(self, c): super().__init__(); self.c = c
    def forward(self, x):
        assert x.shape[1] == self.c, ("bn", x.shape, self.c); _t._tick(nbytes=x.numel() * 4, what="bn"); return _t.Tensor(x.shape, x.dtype, x.fmt)
class ReLU(Module):
    def forward(self, x): return _t.relu(x)
class Identity(Module):
    def forward(self, x): return x
class MaxPool2d(Module):
    def __init__(self, k, s, p): super().__init__(); self.k, self.s, self.p = k, s, p
    def forward(self, x):
        n, c, h, w = x.shape; o = (h + 2 * self.p - self.k) // self.s + 1
        _t._tick(nbytes=x.numel() * 2, what="maxpool"); return _t.Tensor((n, c, o, o), x.dtype, x.fmt)
class AdaptiveAvgPool2d(Module):
    def __init__(self, o): super().__init__(); assert o == 1
    def forward(self, x): _t._tick(what="avgpool"); return _t.Tensor(x.shape[:2] + (1, 1), x.dtype, x.fmt)
class Flatten(Module):
    def forward(self, x): return _t.Tensor((x.shape[0], _t.math.prod(x.shape[1:])), x.dtype)
class Linear(Module):
    def __init__(self, i, o): super().__init__(); self.i, self.o = i, o
    def forward(self, x):
        assert x.shape[-1] == self.i, ("linear", x.shape, self.i); _t._tick(flops=2 * x.numel() * self.o, what="linear")
        return _t.Tensor(x.shape[:-1] + (self.o,), x.dtype)
class Sequential(Module):
    def __init__(self, *mods):
        super().__init__(); self.layers = list(mods); self._mods = list(mods)
    def forward(self, x):
        for m in self.layers: x = m(x)
        return x
class TransformerEncoderLayer(Module):
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", batch_first=False, **k):
        super().__init__(); assert d_model % nhead == 0 and activation in ("relu", "gelu")
        self.d, self.ff, self.bf = d_model, dim_feedforward, batch_first
    def forward(self, x, **k):
        assert x.shape[-1] == self.d; _t._tick(flops=2 * x.numel() * (4 * self.d + 2 * self.ff), what="encoder_layer")
        return _t.Tensor(x.shape, x.dtype)
class TransformerEncoder(Module):
    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, **k):
        super().__init__(); self.layers = [encoder_layer] * num_layers; self._mods = [encoder_layer]
    def forward(self, x, mask=None, src_key_padding_mask=None, is_causal=None):
        for m in self.layers: x = m(x)
        return x
