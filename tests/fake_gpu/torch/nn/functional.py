import torch as _t
def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    assert x.dim() == 4 and w.dim() == 4, (x.shape, w.shape)
    assert x.shape[1] == w.shape[1] * groups, ("conv channels", x.shape, w.shape)
    assert x.dtype is w.dtype, (x.dtype, w.dtype)
    n, c, h, ww = x.shape; k = w.shape[2]
    o = (h + 2 * padding - k) // stride + 1; o2 = (ww + 2 * padding - k) // stride + 1
    _t._tick(flops=2.0 * n * o * o2 * w.shape[0] * c * k * k, nbytes=x.numel() * 2, what="conv2d")
    return _t.Tensor((n, w.shape[0], o, o2), x.dtype, x.fmt)
