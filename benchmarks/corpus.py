"""A corpus of real architectures beside the zoo: the recurrent, transformer and LLM models the coverage
benchmark (benchmarks/coverage.py) prices and measures.

Two steps, each with the tools it needs:

1. export (needs PyTorch, CPU build): small PyTorch modules written here, with random weights, exported
   by ``torch.onnx.export`` exactly as a user's model would be:
   * ``crnn_ocr``: an OCR CRNN (conv stack -> 2-layer bidirectional LSTM -> CTC log-softmax head);
   * ``gru_kws``: a keyword-spotting net (MFCC frames -> 2-layer GRU -> classifier);
   * ``bert_encoder``: a 4-layer BERT-style encoder (embeddings, self-attention with a padding mask, GELU FFN);
   * ``llm_decoder``: a 4-layer Llama-style decoder (RMSNorm, rotary embedding, SwiGLU) exported with a
     key/value cache: inputs ``input_ids`` [batch_size, sequence_length] and
     ``past_key_values.{i}.key/value`` [batch_size, heads, past_sequence_length, head_size]; the attention
     concatenates the past.
2. derive (needs onnxruntime): the deployed forms, made by onnxruntime's own tools:
   * ``crnn_ocr_int8``: ``quantize_dynamic`` (DynamicQuantizeLSTM, ConvInteger);
   * ``bert_encoder_opt``: ``onnxruntime.transformers.optimizer.optimize_model(model_type='bert')``
     (EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu);
   * ``bert_encoder_opt_int8``: ``quantize_dynamic`` of the optimized encoder (QAttention, MatMulInteger);
   * ``llm_decoder_int4``: ``MatMulNBitsQuantizer`` (4-bit, block 32, MatMulNBits).

PyTorch is not a dependency of the project: the export step runs under any interpreter that has
``torch`` and ``onnx`` (``--torch-python /path/to/python``; a separate virtual environment with
``pip install torch onnx``). Without it the exported files already in the cache are used.

    python benchmarks/corpus.py [--out DIR] [--torch-python PY]

Files go to ``$LATENCY_HOME/corpus`` (default ``~/.local/share/latency/corpus``), outside the checkout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

EXPORTED = ("crnn_ocr", "gru_kws", "bert_encoder", "llm_decoder")
DERIVED = ("crnn_ocr_int8", "bert_encoder_opt", "bert_encoder_opt_int8", "llm_decoder_int4")
NAMES = EXPORTED + DERIVED

# sizes of the corpus models
BERT = dict(vocab=8000, hidden=256, layers=4, heads=4, ffn=1024, seq=128)
LLM = dict(vocab=8000, hidden=512, layers=4, heads=8, ffn=1408)


def default_dir() -> str:
    base = os.environ.get("LATENCY_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "latency")
    return os.path.join(base, "corpus")


def path(name: str, out: str | None = None) -> str:
    return os.path.join(out or default_dir(), f"{name}.onnx")


# ---- step 1: PyTorch modules and their export -----------------------------------------------------


def export_all(out: str) -> None:  # pragma: no cover - runs under an interpreter with torch
    import torch
    from torch import nn

    torch.manual_seed(0)

    class CRNN(nn.Module):
        def __init__(self, classes=37, hidden=128):
            super().__init__()

            def block(cin, cout, pool):
                return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(pool)]

            self.cnn = nn.Sequential(*block(1, 32, 2), *block(32, 64, 2), *block(64, 128, (2, 1)),
                                     *block(128, 128, (2, 1)))
            self.rnn = nn.LSTM(128 * 2, hidden, num_layers=2, bidirectional=True)
            self.head = nn.Linear(2 * hidden, classes)

        def forward(self, x):  # x: 1 x 1 x 32 x 128 -> T=32 frames
            f = self.cnn(x)  # b, 128, 2, 32
            b, c, h, w = f.shape
            f = f.reshape(b, c * h, w).permute(2, 0, 1)  # T, b, features
            y, _ = self.rnn(f)
            return torch.log_softmax(self.head(y), dim=-1)  # CTC head: T, b, classes

    class KWS(nn.Module):
        def __init__(self, feats=40, hidden=128, classes=12):
            super().__init__()
            self.gru = nn.GRU(feats, hidden, num_layers=2, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, x):  # x: 1 x 49 frames x 40 MFCC
            y, _ = self.gru(x)
            return self.fc(y[:, -1])

    class BertLayer(nn.Module):
        def __init__(self, h, heads, ffn):
            super().__init__()
            self.heads, self.d = heads, h // heads
            self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(h, eps=1e-12), nn.LayerNorm(h, eps=1e-12)
            self.fc1, self.fc2 = nn.Linear(h, ffn), nn.Linear(ffn, h)

        def split(self, x):
            b, s, _ = x.shape
            return x.view(b, s, self.heads, self.d).permute(0, 2, 1, 3)

        def forward(self, x, mask):
            q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / (self.d ** 0.5) + mask
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
            ctx = ctx.view(x.shape[0], x.shape[1], -1)
            x = self.ln1(x + self.o(ctx))
            return self.ln2(x + self.fc2(nn.functional.gelu(self.fc1(x))))

    class Bert(nn.Module):
        def __init__(self, vocab, hidden, layers, heads, ffn, seq):
            super().__init__()
            self.word, self.pos, self.tok_type = nn.Embedding(vocab, hidden), nn.Embedding(seq, hidden), \
                nn.Embedding(2, hidden)
            self.ln = nn.LayerNorm(hidden, eps=1e-12)
            self.layers = nn.ModuleList(BertLayer(hidden, heads, ffn) for _ in range(layers))
            self.pool = nn.Linear(hidden, hidden)

        def forward(self, input_ids, attention_mask, token_type_ids):
            pos = torch.arange(input_ids.shape[1], dtype=torch.long).unsqueeze(0)
            x = self.ln(self.word(input_ids) + self.pos(pos) + self.tok_type(token_type_ids))
            mask = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * -10000.0
            for layer in self.layers:
                x = layer(x, mask)
            return x, torch.tanh(self.pool(x[:, 0]))

    class RMSNorm(nn.Module):
        def __init__(self, h, eps=1e-6):
            super().__init__()
            self.w, self.eps = nn.Parameter(torch.ones(h)), eps

        def forward(self, x):
            return self.w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def rotate(x, cos, sin):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    class DecoderLayer(nn.Module):
        def __init__(self, h, heads, ffn):
            super().__init__()
            self.heads, self.d = heads, h // heads
            self.q, self.k, self.v, self.o = (nn.Linear(h, h, bias=False) for _ in range(4))
            self.gate, self.up = nn.Linear(h, ffn, bias=False), nn.Linear(h, ffn, bias=False)
            self.down = nn.Linear(ffn, h, bias=False)
            self.n1, self.n2 = RMSNorm(h), RMSNorm(h)

        def forward(self, x, cos, sin, mask, pk, pv):
            b, s, _ = x.shape
            y = self.n1(x)
            q = self.q(y).view(b, s, self.heads, self.d).transpose(1, 2)
            k = self.k(y).view(b, s, self.heads, self.d).transpose(1, 2)
            v = self.v(y).view(b, s, self.heads, self.d).transpose(1, 2)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
            att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / (self.d ** 0.5) + mask, dim=-1)
            ctx = torch.matmul(att, v).transpose(1, 2).reshape(b, s, -1)
            x = x + self.o(ctx)
            y = self.n2(x)
            return x + self.down(nn.functional.silu(self.gate(y)) * self.up(y)), k, v

    class Decoder(nn.Module):
        def __init__(self, vocab, hidden, layers, heads, ffn):
            super().__init__()
            self.emb = nn.Embedding(vocab, hidden)
            self.layers = nn.ModuleList(DecoderLayer(hidden, heads, ffn) for _ in range(layers))
            self.norm, self.lm_head = RMSNorm(hidden), nn.Linear(hidden, vocab, bias=False)
            d = hidden // heads
            self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d)))

        def forward(self, input_ids, *past):
            s, p = input_ids.shape[1], past[0].shape[2]
            pos = torch.arange(s).float() + p
            f = pos[:, None] * self.inv_freq[None, :]
            emb = torch.cat((f, f), dim=-1)
            cos, sin = emb.cos()[None, None], emb.sin()[None, None]
            i = torch.arange(s)[:, None] + p
            j = torch.arange(p + s)[None, :]
            mask = (j > i).float()[None, None] * -1e9
            x, present = self.emb(input_ids), []
            for n, layer in enumerate(self.layers):
                x, k, v = layer(x, cos, sin, mask, past[2 * n], past[2 * n + 1])
                present += [k, v]
            return (self.lm_head(self.norm(x)), *present)

    def save(module, args, name, input_names, output_names, dynamic=None):
        module.eval()
        with torch.no_grad():
            torch.onnx.export(module, args, path(name, out), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic, opset_version=17, dynamo=False)
        print(f"exported {path(name, out)}")

    save(CRNN(), (torch.randn(1, 1, 32, 128),), "crnn_ocr", ["image"], ["log_probs"])
    save(KWS(), (torch.randn(1, 49, 40),), "gru_kws", ["mfcc"], ["logits"])
    b = BERT
    ids = torch.randint(0, b["vocab"], (1, b["seq"]))
    save(Bert(**b), (ids, torch.ones_like(ids), torch.zeros_like(ids)), "bert_encoder",
         ["input_ids", "attention_mask", "token_type_ids"], ["last_hidden_state", "pooler_output"])
    c = LLM
    heads, d = c["heads"], c["hidden"] // c["heads"]
    past = [torch.randn(1, heads, 8, d) for _ in range(2 * c["layers"])]
    pnames = [f"past_key_values.{i}.{w}" for i in range(c["layers"]) for w in ("key", "value")]
    onames = [f"present.{i}.{w}" for i in range(c["layers"]) for w in ("key", "value")]
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "logits": {0: "batch_size", 1: "sequence_length"}}
    dyn.update({n: {0: "batch_size", 2: "past_sequence_length"} for n in pnames})
    dyn.update({n: {0: "batch_size", 2: "total_sequence_length"} for n in onames})
    save(Decoder(**c), (torch.randint(0, c["vocab"], (1, 4)), *past), "llm_decoder", ["input_ids", *pnames],
         ["logits", *onames], dyn)


# ---- step 2: onnxruntime's own transformations ----------------------------------------------------


def derive_all(out: str) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.transformers.optimizer import optimize_model

    quantize_dynamic(path("crnn_ocr", out), path("crnn_ocr_int8", out), weight_type=QuantType.QInt8)
    print(f"derived {path('crnn_ocr_int8', out)}")
    opt = optimize_model(path("bert_encoder", out), model_type="bert", num_heads=BERT["heads"],
                         hidden_size=BERT["hidden"], opt_level=0)
    opt.save_model_to_file(path("bert_encoder_opt", out))
    print(f"derived {path('bert_encoder_opt', out)}: fused {opt.get_fused_operator_statistics()}")
    # the contrib ops have no ONNX shape inference: their outputs are float (as onnxruntime's docs advise)
    quantize_dynamic(path("bert_encoder_opt", out), path("bert_encoder_opt_int8", out), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    print(f"derived {path('bert_encoder_opt_int8', out)}")
    q = MatMulNBitsQuantizer(onnx.load(path("llm_decoder", out)), block_size=32, is_symmetric=True)
    q.process()
    q.model.save_model_to_file(path("llm_decoder_int4", out), use_external_data_format=False)
    print(f"derived {path('llm_decoder_int4', out)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=default_dir(), help="cache directory (default: %(default)s)")
    ap.add_argument("--torch-python", help="an interpreter with torch and onnx, for the export step")
    ap.add_argument("--step", choices=("all", "export", "derive"), default="all")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    if a.step in ("all", "export"):
        try:
            import torch  # noqa: F401
            have_torch = True
        except ImportError:
            have_torch = False
        if have_torch:
            export_all(a.out)
        elif a.torch_python:
            subprocess.run([a.torch_python, os.path.abspath(__file__), "--out", a.out, "--step", "export"], check=True)
        elif all(os.path.exists(path(n, a.out)) for n in EXPORTED):
            print(f"no torch here: using the exported files in {a.out}", file=sys.stderr)
        else:
            sys.exit("error: the export step needs PyTorch: run under an interpreter with torch and onnx, or pass "
                     "--torch-python /path/to/python")
    if a.step in ("all", "derive"):
        derive_all(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
