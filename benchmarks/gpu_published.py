"""The derived GPU targets against published TensorRT latencies at batch 1.

Every published figure below is TensorRT on the named card, with its source, what was timed, and
whether it includes the host<->device copies (``io``: then the estimate adds them over the card's PCIe
link, ``GpuCostModel.copy_us``; MLPerf's single-stream latency includes them, the demoBERT, mmdeploy and
trtexec figures exclude them). mmdeploy times the Python backend wrapper from the host: its figures
carry a per-inference harness cost (``MMDEPLOY_US``, fitted, added to those estimates only); trtexec's
"GPU Compute" mean is the engine's GPU time alone. The models are the zoo's architectures or the ones
built here (:data:`BUILDERS`) with the same shapes (random weights; BERT: the encoder as NVIDIA's
demoBERT engines run it, without the pooler's 0.6 % of the FLOPs being left out). The T4 figures are
split in two halves by a rule fixed before their errors were seen (see the comment above ``Published``):
``fit`` (what ``--fit`` may tune the T4's terms on) and ``held-out`` (scored only); the figures on
other cards check them with nothing fitted there. T4 figures found after that split was fixed form a third
group, ``added`` (never fitted, and not moved into either half): they are scored with the same terms. Figures
found after ``added`` was settled form a fourth group, ``added2`` (T4 and other cards alike; never fitted):
scored the same way and summarised apart, T4 and each other card on a line of its own. ``added3`` (found after
``added2``, never fitted): detection CNNs, YOLOv5 v6.1 N/S/M/L at 640x640 fp16 on a T4 from five sources (the
YOLOv6 report at TensorRT 7.2 and 8.2, mmyolo, PaddleYOLO, DAMO-YOLO), whose spread for one network (YOLOv5-N
1.14-2.23 ms) shows how far published figures of one model move with the runtime version and the harness,
ultralytics YOLOv8 and YOLO11 N/S/M/L/X on TensorRT 10 (its docs), YOLOv8 on an A100, and BERT-Base / -Large on TensorRT 7.0 in fp16 and
FP32 (DeepLearningExamples).

    python benchmarks/gpu_published.py            # errors of the targets as declared
    python benchmarks/gpu_published.py --fit      # fit the T4 terms on the fit half, score both halves

Output: one line per figure (published, estimate, error) and the error summary of each half; the
committed copy is ``benchmarks/results/gpu_published.txt``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEMOBERT_T4 = ("NVIDIA/TensorRT demo/BERT/README.md at commit 7d2a70a1 (TensorRT 8.4.3, CUDA 11.6), "
               "'Inference performance: NVIDIA T4 (16GB)', average latency")
DEMOBERT_A100 = ("NVIDIA/TensorRT demo/BERT/README.md at commit 9973b2f4 (TensorRT 10.x OSS release), "
                 "'Inference performance: NVIDIA A100 (40GB)', average latency")
MLPERF_T4 = ("MLPerf Inference v0.7 closed, NVIDIA T4x1_TRT (TensorRT 7.2, CUDA 11.0), resnet50 SingleStream "
             "mlperf_log_summary.txt mean latency (mlcommons/inference_results_v0.7; includes the input copy and the "
             "harness; Inspur 0.873 ms and Lenovo 0.880 ms on the same stack)")

MMDEPLOY_T4 = ("open-mmlab/mmdeploy docs/en/03-benchmark/benchmark.md at commit 0111e1f1 (TensorRT 7.2.3.4, CUDA 11.3), "
               "'Latency benchmark', mmcls, T4, batch 1, static graph, mean of 100 images after 1010 warm-up runs "
               "(host-timed around the Python backend wrapper's forward on GPU tensors: no copies; the harness cost "
               "MMDEPLOY_US added)")

MMDEPLOY_T4_EDIT = ("open-mmlab/mmdeploy docs/en/03-benchmark/benchmark.md at commit 0111e1f1 (TensorRT 7.2.3.4, CUDA "
                    "11.3), 'Latency benchmark', mmedit, T4, batch 1, 32x32 input, mean of 100 images after 10 warm-up "
                    "runs, host-timed like the mmcls table (the bicubic x4 upsampling is an mmdeploy TensorRT plugin)")
#: trtexec --onnx=M.onnx --fp16 --shapes=image:1x3x224x224 --threads on a T4 (TensorRT 7.2.3.4, CUDA 11.0, cuDNN
#: 8.2), "GPU Compute" mean (no copies), as the Ascend model zoo's READMEs record it ("7.2 T4性能数据")
ASCEND_T4 = "%s ('T4性能数据': trtexec --fp16, batch 1, GPU Compute mean; TensorRT 7.2.3.4, CUDA 11.0)"
ASCEND = {
    "mnasnet1_0": "Ascend/ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/Mnasnet1_0/README.md at commit cb7046bc "
                  "(torchvision mnasnet1_0: 'mean 0.534034 ms')",
    "mobilenet_v3_large": "Ascend/ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/MobileNetV3_large_100/README.md at "
                          "commit bd2458b1 (gen-efficientnet mobilenetv3_large_100: bs1 1478.24 fps)",
    "resnet101": "Ascend/ModelZoo-PyTorch ACL_PyTorch/built-in/cv/Resnet101_Pytorch_Infer/ReadMe.md at commit 05360171 "
                 "(torchvision resnet101: 'mean 2.1015 ms')",
    "resnet152": "Ascend/ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/ResNet152/README.md at commit 6b7468e2 "
                 "(torchvision resnet152: 'mean 3.00433 ms')",
    "resnet50": "Ascend/ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/baseline_dino_resnet50/README.md at commit "
                "957f4a14 (DINO's torchvision resnet50 with its linear classifier: bs1 878.742 fps; the README does not "
                "repeat the TensorRT version)",
    "resnext50_32x4d": "Ascend/modelzoo built-in/ACL_PyTorch/Benchmark/cv/classification/ResNext50/README.md at commit "
                       "0b10bed5 (torchvision resnext50_32x4d: 'mean 1.31054 ms')",
    "wide_resnet101_2": "Ascend/ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/Wide_ResNet101_2/README.md at commit "
                        "cb7046bc (torchvision wide_resnet101_2: bs1 244.615 fps)",
    "regnetx_016": "Ascend/ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/RegNetX-1.6GF/README.md at commit c885ed6e "
                   "(timm regnetx_016: 'batch1 t4吞吐率：436.275fps')",
    "resnext101_32x8d": "Ascend/ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/ResNext101_32x8d/README.md at commit "
                        "f849e847 (torchvision resnext101_32x8d: T4 bs1 248.576 fps; the README does not repeat the "
                        "TensorRT version)",
}
DEMOBERT_T4_TRT71 = ("NVIDIA/TensorRT demo/BERT/README.md at commit 805810b1 (TensorRT 7.1.3.4, CUDA 11.0), "
                     "'Inference performance: NVIDIA T4 (16GB)', average latency")
DEMOBERT_T4_TRT80 = ("NVIDIA/TensorRT demo/BERT/README.md at commit 60024121 (TensorRT 8.0.1.6, CUDA 11.3), "
                     "'Inference performance: NVIDIA T4 (16GB)', average latency")
TFQUANT_A100 = ("NVIDIA/TensorRT tools/tensorflow-quantization/docs/source/docs/model_zoo.md at commit 768d994b "
                "(TensorRT 8.4, A100), QAT (TensorRT) latency at bs=1 of tf.keras.applications models quantized with "
                "Q/DQ nodes by the toolkit")
DEMOBERT_T4_TRT82 = ("NVIDIA/TensorRT demo/BERT/README.md at commit 8f76bfe9 (TensorRT 8.2: the commit is 'update perf "
                     "number for rel-8.2', the README's version table still reads 8.0.1.6), 'Inference performance: NVIDIA "
                     "T4 (16GB)', average latency")
DEMOBERT_L4 = ("NVIDIA/TensorRT demo/BERT/README.md at commit 37c01d41 (TensorRT 10.7.0.23), 'Inference Performance NVIDIA "
               "L4', average latency ('scripts/inference_benchmark.sh --gpu Ampere on NVIDIA L4')")
#: the vit-small README's first version: 't4上执行' perf_g.sh, whose trtexec --fp16 --shapes=image:1x3x224x224 run
#: it turns into 'gpu bs1 fps' as 1000 / GPU Compute mean; the README reports it as the '基准性能' (baseline) column
#: YOLOv5 v6.1 at 640x640 on a T4 (``added3``: detection CNNs, found after ``added2``; never fitted)
YOLOV6_T4_TRT72 = ("YOLOv6 report, arXiv 2209.02976, Table 1 (YOLOv5 release v6.1 against YOLOv6: 'FP16-precision on a "
                   "Tesla T4 in the same environment with TensorRT', 7.2.1.6 per its appendix A.1), batch-1 latency; "
                   "pre-processing and NMS excluded (meituan/YOLOv6 docs/Test_speed.md at commit e98bc81a: trtexec "
                   "--fp16 with fp16 inputs and outputs)")
YOLOV6_T4_TRT82 = ("YOLOv6 report, arXiv 2209.02976, appendix Table 18 (the same comparison 'on a T4 GPU with a higher "
                   "version of TensorRT (8.2)'), batch-1 latency")
MMYOLO_T4 = ("open-mmlab/mmyolo docs/en/model_zoo.md at commit 8c4d9dc5 ('TRT-FP16-GPU-Latency(ms) is the GPU Compute "
             "time on NVIDIA Tesla T4 device with TensorRT 8.4, a batch size of 1, a test shape of 640x640 and only model "
             "forward': its own YOLOv5 v6.1 re-implementation, priced without the box decode)")
PADDLEYOLO_T4 = ("PaddlePaddle/PaddleYOLO configs/yolov5/README.md at commit 0b5e7907 (T4, TensorRT 8.0.3.4 through Paddle "
                 "Inference, FP16, batch 1, pre-processing and NMS excluded; Paddle's own retrained YOLOv5 weights)")
DAMOYOLO_T4 = ("DAMO-YOLO's model card as copied in jp-lan/AdaDet docs/models/object_detection_EN.md at commit 221de1f0 "
               "(T4, TensorRT 7.2.1.6, CUDA 10.2, FP16, batch 1, 'does not include post-processing (nms)')")
DLE_BERT_T4_TRT70 = ("NVIDIA/DeepLearningExamples TensorFlow/LanguageModeling/BERT/trt/README.md at commit e159774d "
                     "(TensorRT 7.0.0.1, CUDA 10.2; 'Inference performance: NVIDIA T4 (16GB)', batch 1, average of 200 "
                     "runs after one warm-up, 'the time measurements do not include the time required to copy inputs "
                     "to the device and copy outputs to the host'; mixed precision and FP32 engines)")
ULTRALYTICS_T4 = ("ultralytics/ultralytics docs/en/models/yolo11.md at commit 040502be (the detection table's 'Speed T4 "
                  "TensorRT10 (ms)': 1.5 / 2.5 / 4.7 / 6.2 / 11.3; batch 1, 640x640, FP16 per the docs' chart label "
                  "'Latency T4 TensorRT10 FP16 (ms/img)'; the inference time of 'yolo val', whether NMS is in it "
                  "is not stated)")
ULTRALYTICS_V8_T4 = ("ultralytics/ultralytics docs/en/compare/yolo11-vs-yolov8.md at commit 95d73b19 (YOLOv8 'Speed T4 "
                     "TensorRT10 (ms)': 1.47 / 2.66 / 5.86 / 9.06 / 14.37, the same in docs/model_data.py, the docs' "
                     "chart data, 'Latency T4 TensorRT10 FP16'; params 3.2 / 11.2 / 25.9 / 43.7 / 68.2 M, the original "
                     "head; the page states no method)")
ULTRALYTICS_V8_A100 = ("ultralytics/ultralytics docs/en/models/yolov8.md at commit 0059318a ('Speed A100 TensorRT (ms)': "
                       "0.99 / 1.20 / 1.83 / 2.39 / 3.53; 'averaged over COCO val images using an Amazon EC2 P4d "
                       "instance', batch 1; precision not stated, taken as fp16)")
ASCEND_VIT_SMALL = ("Ascend/ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/vit-small/README.md at commit 05360171 "
                    "(timm vit_small_patch16_224: 'vit-small bs1 ... 基准性能 222.4976' fps, from perf_g.sh run on the T4: "
                    "trtexec --fp16, batch 1, GPU Compute mean; the README gives no TensorRT version, and its rewrite at "
                    "commit 3bf12d85 lists T4 bs1 391.5258 fps without saying how it was measured)")

#: How the T4 figures are split (fixed before their errors were looked at): the first 15 figures keep the
#: split they were given (demoBERT: half of each model's four figures; MLPerf: held out). Figures added
#: later alternate within each table of their source, in the table's row order and fp32 / fp16 / int8
#: order, starting with held-out (the mmcls table: ResNet H F H, ResNeXt F H F, SE-ResNet H F H,
#: ShuffleNetV2 F H F, the split its first six figures already had; the mmedit table: SRCNN H F H; the
#: Ascend model zoo's trtexec figures, by model name: H F H F H F H).
#: Figures on other cards are "check": nothing is fitted on them. T4 figures found after the fit was settled
#: are "added": scored with the fitted terms, never fitted and never moved into the split (the same engines'
#: figures from older demoBERT releases, TensorRT 7.1 and 8.0, and two more Ascend model zoo trtexec figures).
#: Figures found after ``added`` was settled are "added2", on every card: never fitted, summarised apart (demoBERT's
#: T4 table of the TensorRT 8.2 release, its L4 table of TensorRT 10.7, and the Ascend model zoo's ViT-S/16 trtexec
#: figure). demoBERT's T4 tables of TensorRT 7.2.0, 7.2.2 and 7.2.3 repeat the 7.1 figures digit for digit and are
#: left out.


@dataclass(frozen=True)
class Published:
    target: str
    model: str
    seq: int
    precision: str   # our builder precision: demoBERT's and MLPerf's "INT8" engines are int8 with fp16 fallback
    ms: float
    source: str
    half: str        # "fit" | "held-out" | "check" (another card) | "added" (T4, found later) | "added2" (any card,
    #                  found after "added") | "added3" (T4 detection CNNs, after "added2"); only "fit" is fitted
    #: bytes copied host -> device and device -> host inside the published figure (0: it excludes copies)
    io: tuple = (0, 0)

    @property
    def host_timed(self) -> bool:
        """mmdeploy times the backend wrapper's forward from the host (Python, bindings, enqueue,
        synchronize): its figures carry a per-inference harness cost beyond the engine's GPU time."""
        return self.source.startswith("open-mmlab/mmdeploy")


PUBLISHED = (
    Published("t4", "bert_base", 128, "fp16", 1.95, DEMOBERT_T4, "fit"),
    Published("t4", "bert_base", 128, "int8", 1.69, DEMOBERT_T4, "held-out"),
    Published("t4", "bert_base", 384, "fp16", 4.04, DEMOBERT_T4, "held-out"),
    Published("t4", "bert_base", 384, "int8", 2.52, DEMOBERT_T4, "fit"),
    Published("t4", "bert_large", 128, "fp16", 5.53, DEMOBERT_T4, "held-out"),
    Published("t4", "bert_large", 128, "int8", 3.65, DEMOBERT_T4, "fit"),
    Published("t4", "bert_large", 384, "fp16", 12.45, DEMOBERT_T4, "fit"),
    Published("t4", "bert_large", 384, "int8", 7.29, DEMOBERT_T4, "held-out"),
    # MLPerf's single-stream latency includes the input copy (1x3x224x224 int8, NVIDIA's harness) and the
    # top-1 index copied back (4 bytes)
    Published("t4", "resnet50", 224, "int8", 1.000, MLPERF_T4, "held-out", io=(3 * 224 * 224, 4)),
    Published("t4", "resnet50", 224, "fp32", 2.97, MMDEPLOY_T4, "held-out"),
    Published("t4", "resnet50", 224, "fp16", 1.26, MMDEPLOY_T4, "fit"),
    Published("t4", "resnet50", 224, "int8", 1.21, MMDEPLOY_T4, "held-out"),
    Published("t4", "resnext50_32x4d", 224, "fp32", 4.31, MMDEPLOY_T4, "fit"),
    Published("t4", "resnext50_32x4d", 224, "fp16", 1.42, MMDEPLOY_T4, "held-out"),
    Published("t4", "resnext50_32x4d", 224, "int8", 1.37, MMDEPLOY_T4, "fit"),
    Published("t4", "seresnet50", 224, "fp32", 3.41, MMDEPLOY_T4, "held-out"),
    Published("t4", "seresnet50", 224, "fp16", 1.66, MMDEPLOY_T4, "fit"),
    Published("t4", "seresnet50", 224, "int8", 1.51, MMDEPLOY_T4, "held-out"),
    Published("t4", "shufflenet_v2_x1_0", 224, "fp32", 1.37, MMDEPLOY_T4, "fit"),
    Published("t4", "shufflenet_v2_x1_0", 224, "fp16", 1.19, MMDEPLOY_T4, "held-out"),
    Published("t4", "shufflenet_v2_x1_0", 224, "int8", 1.13, MMDEPLOY_T4, "fit"),
    # trtexec --fp16 on a T4, GPU compute mean (torchvision / timm models exported to ONNX)
    Published("t4", "mnasnet1_0", 224, "fp16", 0.534034, ASCEND_T4 % ASCEND["mnasnet1_0"], "held-out"),
    Published("t4", "mobilenet_v3_large", 224, "fp16", 1000 / 1478.24, ASCEND_T4 % ASCEND["mobilenet_v3_large"], "fit"),
    Published("t4", "resnet101", 224, "fp16", 2.1015, ASCEND_T4 % ASCEND["resnet101"], "held-out"),
    Published("t4", "resnet152", 224, "fp16", 3.00433, ASCEND_T4 % ASCEND["resnet152"], "fit"),
    Published("t4", "resnet50", 224, "fp16", 1000 / 878.742, ASCEND_T4 % ASCEND["resnet50"], "held-out"),
    Published("t4", "resnext50_32x4d", 224, "fp16", 1.31054, ASCEND_T4 % ASCEND["resnext50_32x4d"], "fit"),
    Published("t4", "wide_resnet101_2", 224, "fp16", 1000 / 244.615, ASCEND_T4 % ASCEND["wide_resnet101_2"], "held-out"),
    # mmedit's table of the same page (input 32x32, upsampled x4 inside the network)
    Published("t4", "srcnn_x4", 32, "fp32", 0.70, MMDEPLOY_T4_EDIT, "held-out"),
    Published("t4", "srcnn_x4", 32, "fp16", 0.35, MMDEPLOY_T4_EDIT, "fit"),
    Published("t4", "srcnn_x4", 32, "int8", 0.26, MMDEPLOY_T4_EDIT, "held-out"),
    # found after the split was fixed: scored, never fitted
    Published("t4", "bert_base", 128, "fp16", 1.76, DEMOBERT_T4_TRT71, "added"),
    Published("t4", "bert_base", 128, "int8", 1.66, DEMOBERT_T4_TRT71, "added"),
    Published("t4", "bert_base", 384, "fp16", 3.63, DEMOBERT_T4_TRT71, "added"),
    Published("t4", "bert_base", 384, "int8", 2.67, DEMOBERT_T4_TRT71, "added"),
    Published("t4", "bert_large", 128, "fp16", 4.91, DEMOBERT_T4_TRT71, "added"),
    Published("t4", "bert_large", 128, "int8", 4.10, DEMOBERT_T4_TRT71, "added"),
    Published("t4", "bert_large", 384, "fp16", 11.51, DEMOBERT_T4_TRT71, "added"),
    Published("t4", "bert_large", 384, "int8", 7.73, DEMOBERT_T4_TRT71, "added"),
    Published("t4", "bert_base", 128, "fp16", 1.93, DEMOBERT_T4_TRT80, "added"),
    Published("t4", "bert_base", 128, "int8", 1.33, DEMOBERT_T4_TRT80, "added"),
    Published("t4", "bert_base", 384, "fp16", 3.69, DEMOBERT_T4_TRT80, "added"),
    Published("t4", "bert_base", 384, "int8", 2.43, DEMOBERT_T4_TRT80, "added"),
    Published("t4", "bert_large", 128, "fp16", 5.02, DEMOBERT_T4_TRT80, "added"),
    Published("t4", "bert_large", 128, "int8", 3.51, DEMOBERT_T4_TRT80, "added"),
    Published("t4", "bert_large", 384, "fp16", 11.51, DEMOBERT_T4_TRT80, "added"),
    Published("t4", "bert_large", 384, "int8", 7.07, DEMOBERT_T4_TRT80, "added"),
    Published("t4", "regnetx_016", 224, "fp16", 1000 / 436.275, ASCEND_T4 % ASCEND["regnetx_016"], "added"),
    Published("t4", "resnext101_32x8d", 224, "fp16", 1000 / 248.576, ASCEND_T4 % ASCEND["resnext101_32x8d"], "added"),
    Published("a100", "bert_base", 128, "fp16", 0.62, DEMOBERT_A100, "check"),
    Published("a100", "bert_base", 128, "int8", 0.54, DEMOBERT_A100, "check"),
    Published("a100", "bert_base", 384, "fp16", 1.26, DEMOBERT_A100, "check"),
    Published("a100", "bert_base", 384, "int8", 1.14, DEMOBERT_A100, "check"),
    Published("a100", "bert_large", 128, "fp16", 1.54, DEMOBERT_A100, "check"),
    Published("a100", "bert_large", 128, "int8", 1.23, DEMOBERT_A100, "check"),
    Published("a100", "bert_large", 384, "fp16", 2.96, DEMOBERT_A100, "check"),
    Published("a100", "bert_large", 384, "int8", 2.55, DEMOBERT_A100, "check"),
    # explicitly quantized (QAT: Q/DQ from the toolkit) Keras models; PTQ gives the same latencies
    Published("a100", "resnet50_keras", 224, "int8", 0.45, TFQUANT_A100, "check"),
    Published("a100", "resnet101_keras", 224, "int8", 0.84, TFQUANT_A100, "check"),
    Published("a100", "mobilenet_v1", 224, "int8", 0.16, TFQUANT_A100, "check"),
    Published("a100", "mobilenet_v2", 224, "int8", 0.30, TFQUANT_A100, "check"),
    Published("a100", "efficientnet_b0", 224, "int8", 0.68, TFQUANT_A100, "check"),
    # found after 'added' was settled: scored, never fitted. demoBERT T4, TensorRT 8.2, batch 1, the "Average" columns
    # of its rows (INT8 p95 p99 average, FP16 p95 p99 average): BERT Base '| 128 | 1 | 1.64 | 1.68 | 1.37 | 2.00 |
    # 2.15 | 1.96 |', '| 384 | 1 | 2.59 | 2.63 | 2.51 | 4.12 | 4.16 | 4.03 |'; BERT Large '| 128 | 1 | 3.72 | 3.81 |
    # 3.67 | 5.69 | 5.76 | 5.57 |', '| 384 | 1 | 7.50 | 7.54 | 7.31 | 12.56 | 12.67 | 12.37 |'
    Published("t4", "bert_base", 128, "fp16", 1.96, DEMOBERT_T4_TRT82, "added2"),
    Published("t4", "bert_base", 128, "int8", 1.37, DEMOBERT_T4_TRT82, "added2"),
    Published("t4", "bert_base", 384, "fp16", 4.03, DEMOBERT_T4_TRT82, "added2"),
    Published("t4", "bert_base", 384, "int8", 2.51, DEMOBERT_T4_TRT82, "added2"),
    Published("t4", "bert_large", 128, "fp16", 5.57, DEMOBERT_T4_TRT82, "added2"),
    Published("t4", "bert_large", 128, "int8", 3.67, DEMOBERT_T4_TRT82, "added2"),
    Published("t4", "bert_large", 384, "fp16", 12.37, DEMOBERT_T4_TRT82, "added2"),
    Published("t4", "bert_large", 384, "int8", 7.31, DEMOBERT_T4_TRT82, "added2"),
    # trtexec --fp16 on a T4, GPU compute mean: 1000 / 222.4976 fps at batch 1
    Published("t4", "vit_small", 224, "fp16", 1000 / 222.4976, ASCEND_VIT_SMALL, "added2"),
    # demoBERT on an L4, TensorRT 10.7, batch 1, "Average" columns (nothing is fitted on the L4): BERT base '| 128 | 1 |
    # 0.62 | 0.62 | 0.61 | 1.01 | 1.02 | 1.00 |', '| 384 | 1 | 1.31 | 1.31 | 1.30 | 2.10 | 2.10 | 2.09 |'; BERT large
    # '| 128 | 1 | 1.80 | 1.80 | 1.78 | 3.12 | 3.12 | 3.10 |', '| 384 | 1 | 3.47 | 3.48 | 3.45 | 6.64 | 6.75 | 6.43 |'
    Published("l4", "bert_base", 128, "fp16", 1.00, DEMOBERT_L4, "added2"),
    Published("l4", "bert_base", 128, "int8", 0.61, DEMOBERT_L4, "added2"),
    Published("l4", "bert_base", 384, "fp16", 2.09, DEMOBERT_L4, "added2"),
    Published("l4", "bert_base", 384, "int8", 1.30, DEMOBERT_L4, "added2"),
    Published("l4", "bert_large", 128, "fp16", 3.10, DEMOBERT_L4, "added2"),
    Published("l4", "bert_large", 128, "int8", 1.78, DEMOBERT_L4, "added2"),
    Published("l4", "bert_large", 384, "fp16", 6.43, DEMOBERT_L4, "added2"),
    Published("l4", "bert_large", 384, "int8", 3.45, DEMOBERT_L4, "added2"),
    # YOLOv5 v6.1 N / S / M / L at 640x640, fp16, batch 1 on a T4: five sources of the same four networks
    # (latency columns: 1.7 / 2.7 / 5.5 / 8.8 ms at TensorRT 7.2, 1.4 / 2.3 / 4.9 / 7.9 at 8.2)
    Published("t4", "yolov5n", 640, "fp16", 1.7, YOLOV6_T4_TRT72, "added3"),
    Published("t4", "yolov5s", 640, "fp16", 2.7, YOLOV6_T4_TRT72, "added3"),
    Published("t4", "yolov5m", 640, "fp16", 5.5, YOLOV6_T4_TRT72, "added3"),
    Published("t4", "yolov5l", 640, "fp16", 8.8, YOLOV6_T4_TRT72, "added3"),
    Published("t4", "yolov5n", 640, "fp16", 1.4, YOLOV6_T4_TRT82, "added3"),
    Published("t4", "yolov5s", 640, "fp16", 2.3, YOLOV6_T4_TRT82, "added3"),
    Published("t4", "yolov5m", 640, "fp16", 4.9, YOLOV6_T4_TRT82, "added3"),
    Published("t4", "yolov5l", 640, "fp16", 7.9, YOLOV6_T4_TRT82, "added3"),
    Published("t4", "yolov5n_raw", 640, "fp16", 1.14, MMYOLO_T4, "added3"),
    Published("t4", "yolov5s_raw", 640, "fp16", 1.89, MMYOLO_T4, "added3"),
    Published("t4", "yolov5m_raw", 640, "fp16", 4.28, MMYOLO_T4, "added3"),
    Published("t4", "yolov5l_raw", 640, "fp16", 6.8, MMYOLO_T4, "added3"),
    Published("t4", "yolov5n", 640, "fp16", 1.5, PADDLEYOLO_T4, "added3"),
    Published("t4", "yolov5s", 640, "fp16", 2.6, PADDLEYOLO_T4, "added3"),
    Published("t4", "yolov5m", 640, "fp16", 5.2, PADDLEYOLO_T4, "added3"),
    Published("t4", "yolov5l", 640, "fp16", 7.9, PADDLEYOLO_T4, "added3"),
    Published("t4", "yolov5n", 640, "fp16", 2.23, DAMOYOLO_T4, "added3"),
    Published("t4", "yolov5s", 640, "fp16", 3.04, DAMOYOLO_T4, "added3"),
    Published("t4", "yolov5m", 640, "fp16", 5.71, DAMOYOLO_T4, "added3"),
    # BERT on TensorRT 7.0 (the demoBERT engines' predecessor in DeepLearningExamples): fp16 and FP32 (CUDA cores),
    # '| 128 | 1 | 1.97 | 1.97 | 1.93 | 6.47 | 6.51 | 6.12 |' ... average columns
    Published("t4", "bert_base", 128, "fp16", 1.93, DLE_BERT_T4_TRT70, "added3"),
    Published("t4", "bert_base", 128, "fp32", 6.12, DLE_BERT_T4_TRT70, "added3"),
    Published("t4", "bert_base", 384, "fp16", 4.97, DLE_BERT_T4_TRT70, "added3"),
    Published("t4", "bert_base", 384, "fp32", 18.44, DLE_BERT_T4_TRT70, "added3"),
    Published("t4", "bert_large", 128, "fp16", 5.39, DLE_BERT_T4_TRT70, "added3"),
    Published("t4", "bert_large", 128, "fp32", 20.74, DLE_BERT_T4_TRT70, "added3"),
    Published("t4", "bert_large", 384, "fp16", 15.49, DLE_BERT_T4_TRT70, "added3"),
    Published("t4", "bert_large", 384, "fp32", 61.96, DLE_BERT_T4_TRT70, "added3"),
    # ultralytics YOLOv8 N / S / M / L / X at 640x640, fp16: on a T4 (TensorRT 10) and on an A100 (nothing fitted there)
    *(Published("t4", f"yolov8{s}", 640, "fp16", ms, ULTRALYTICS_V8_T4, "added3")
      for s, ms in zip("nsmlx", (1.47, 2.66, 5.86, 9.06, 14.37))),
    *(Published("a100", f"yolov8{s}", 640, "fp16", ms, ULTRALYTICS_V8_A100, "added3")
      for s, ms in zip("nsmlx", (0.99, 1.20, 1.83, 2.39, 3.53))),
    # ultralytics YOLO11 N / S / M / L / X at 640x640 on a T4, TensorRT 10, fp16 (its docs' detection table)
    Published("t4", "yolo11n", 640, "fp16", 1.5, ULTRALYTICS_T4, "added3"),
    Published("t4", "yolo11s", 640, "fp16", 2.5, ULTRALYTICS_T4, "added3"),
    Published("t4", "yolo11m", 640, "fp16", 4.7, ULTRALYTICS_T4, "added3"),
    Published("t4", "yolo11l", 640, "fp16", 6.2, ULTRALYTICS_T4, "added3"),
    Published("t4", "yolo11x", 640, "fp16", 11.3, ULTRALYTICS_T4, "added3"),
)

#: the grid --fit searches: the T4's achievable tensor-core and DRAM fractions, its per-kernel launch gap and
#: latency floor, the fixed cost of each wave of GEMM tiles, and the share of the GEMM rate its fp16 and int8
#: implicit-GEMM convolutions sustain
GRID = {"tensor": [0.40, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90],
        "dram": [0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90],
        "launch_us": [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0],
        "min_kernel_us": [1.0, 1.5, 2.0, 2.5, 3.0, 4.0],
        "wave_us": [0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0],
        "conv": [0.20, 0.25, 0.30, 0.35, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 1.00],
        "conv_int8": [0.10, 0.125, 0.15, 0.175, 0.20, 0.25, 0.30, 0.35, 0.40, 0.50, 0.60, 0.80, 1.00],
        "mmdeploy_us": [0.0, 25.0, 50.0, 75.0, 100.0, 125.0, 150.0, 200.0]}
#: the per-inference cost of mmdeploy's host-timed harness (``Published.host_timed``), in microseconds: a
#: property of the measurement, not of the card, so it is added to those figures' estimates here and is no
#: term of the cost model; fitted with the others (``--fit``). Where the same network was also timed on the
#: GPU alone (trtexec's GPU compute mean, the Ascend figures) the two differ by about this much: ResNet-50
#: fp16 1.26 vs 1.14 ms, ResNeXt-50 fp16 1.42 vs 1.31 ms
MMDEPLOY_US = 150.0
#: where the descent starts besides the declared terms (the launch gap and the per-wave cost trade against each
#: other, which one term at a time cannot cross): the best end point is kept
STARTS = ({"launch_us": 3.0, "wave_us": 4.0}, {"launch_us": 5.0, "wave_us": 2.0})


def fit_terms(figures, cfgs, spec: dict, starts=STARTS) -> tuple[float, dict]:
    """Coordinate descent over :data:`GRID`: each term in turn takes the grid value with the smallest mean
    |log error| on ``figures``, the others held, until a full round changes nothing (at most 6 rounds); run
    from the T4's declared terms and from each of ``starts``, keeping the best end point. Returns (loss, terms)."""
    from latency.cost.gpu import GpuCostModel

    def loss(over):
        m = GpuCostModel(dict(spec, model={k: v for k, v in over.items() if k != "mmdeploy_us"}))
        return sum(abs(math.log(predict_ms(cfgs[p], m, p.io, over["mmdeploy_us"] if p.host_timed else 0.0) / p.ms))
                   for p in figures) / len(figures)

    declared = GpuCostModel(spec)
    base = {k: (declared.eff.get(k) or declared.lat.get(k) or declared.conv.get(k)) for k in GRID if k != "mmdeploy_us"}
    base["mmdeploy_us"] = MMDEPLOY_US
    best = None
    for start in ({},) + tuple(starts):
        cur = dict(base, **start)
        lo_cur = loss(cur)
        for _ in range(6):
            changed = False
            for k, values in GRID.items():
                for v in values:
                    trial = dict(cur, **{k: v})
                    lo = loss(trial)
                    if lo < lo_cur - 1e-12:
                        lo_cur, cur, changed = lo, trial, True
            if not changed:
                break
        if best is None or lo_cur < best[0] - 1e-12:
            best = (lo_cur, cur)
    return best


def _resnet_family(net, size, layers, block):
    """Stem (7x7/2 conv, 3x3/2 max pool), four stages of ``block(net, x, cin, planes, stride)`` (which
    returns ``(y, cout)``), global average pool and a 1000-way classifier."""
    from profilers.zoo import _classifier_output, _image_input

    x = _image_input(net, size)
    x = net.maxpool(net.cba(x, 3, 64, 7, 2), 3, 2, p=1)
    cin = 64
    for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            with net.scope(f"layer{i + 1}.{j}"):
                x, cin = block(net, x, cin, planes, stride)
    x = net.flatten(net.gap(x))
    return _classifier_output(net, net.gemm(x, cin, 1000))


def _shortcut(net, x, cin, cout, stride):
    if stride != 1 or cin != cout:
        with net.scope("downsample"):
            return net.bn(net.conv(x, cin, cout, 1, stride), cout)
    return x


def _resnext_block(net, x, cin, planes, stride, width_per_group=4):
    """mmcls ResNeXt-50 32x4d bottleneck (torchvision's too): width groups * width_per_group * planes / 64,
    grouped 3x3 (32 groups)."""
    width, cout = 32 * width_per_group * planes // 64, planes * 4
    y = net.cba(x, cin, width, 1)
    y = net.cba(y, width, width, 3, stride, g=32)
    y = net.bn(net.conv(y, width, cout, 1), cout, gamma=0.2)
    return net.act(net.op("Add", [y, _shortcut(net, x, cin, cout, stride)]), "relu"), cout


def _se_block(net, x, cin, planes, stride):
    """mmcls SE-ResNet-50 bottleneck: an SE layer (ratio 16: GAP, 1x1 conv, ReLU, 1x1 conv, Sigmoid,
    Mul) on the third conv's output, before the residual add."""
    from profilers.zoo import _make_divisible

    cout = planes * 4
    y = net.cba(x, cin, planes, 1)
    y = net.cba(y, planes, planes, 3, stride)
    y = net.bn(net.conv(y, planes, cout, 1), cout, gamma=0.2)
    y = net.se(y, cout, _make_divisible(cout // 16, 8), "relu", "sigmoid")
    return net.act(net.op("Add", [y, _shortcut(net, x, cin, cout, stride)]), "relu"), cout


def _wide_block(net, x, cin, planes, stride):
    """torchvision's Wide ResNet bottleneck (wide_resnet101_2): the 3x3 conv's width doubled (width_per_group
    128), the stride in the 3x3 conv."""
    width, cout = planes * 2, planes * 4
    y = net.cba(x, cin, width, 1)
    y = net.cba(y, width, width, 3, stride)
    y = net.bn(net.conv(y, width, cout, 1), cout, gamma=0.2)
    return net.act(net.op("Add", [y, _shortcut(net, x, cin, cout, stride)]), "relu"), cout


def _keras_v1_block(net, x, cin, planes, stride):
    """Keras ResNet v1 bottleneck (tf.keras.applications ResNet50 / ResNet101): the stride in the first
    1x1 conv, not in the 3x3 one."""
    cout = planes * 4
    y = net.cba(x, cin, planes, 1, stride)
    y = net.cba(y, planes, planes, 3)
    y = net.bn(net.conv(y, planes, cout, 1), cout, gamma=0.2)
    return net.act(net.op("Add", [y, _shortcut(net, x, cin, cout, stride)]), "relu"), cout


def zoo_resnet(net, size, layers):
    """torchvision's ResNet with bottlenecks (v1.5) of these stage depths, as the zoo builds ResNet-50/101."""
    from profilers import zoo

    return zoo._resnet(net, size=size, layers=layers, bottleneck=True)


def _mobilenet_v1(net, size=224):
    """tf.keras.applications MobileNet (v1, alpha 1): 3x3/2 conv, 13 depthwise-separable blocks (each a
    3x3 depthwise and a 1x1 conv with BN and ReLU6), global average pool, 1000-way classifier."""
    from profilers.zoo import _classifier_output, _image_input

    x = net.cba(_image_input(net, size), 3, 32, 3, 2, act="relu6")
    cin = 32
    for cout, s in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
                    (512, 1), (512, 1), (1024, 2), (1024, 1)):
        x = net.cba(x, cin, cin, 3, s, g=cin, act="relu6")
        x = net.cba(x, cin, cout, 1, act="relu6")
        cin = cout
    x = net.flatten(net.gap(x))
    return _classifier_output(net, net.gemm(x, cin, 1000))


def _srcnn(net, size=32):
    """mmedit's SRCNN (x4): bicubic upsampling of the image, then 9x9 conv 3->64, ReLU, 1x1 conv 64->32,
    ReLU, 5x5 conv 32->3 (all with bias)."""
    import numpy as np
    from profilers.zoo import _classifier_output, _image_input

    x = _image_input(net, size)
    x = net.op("Resize", [x, "", net.const([1.0, 1.0, 4.0, 4.0], np.float32)], mode="cubic")
    x = net.act(net.conv(x, 3, 64, 9, bias=True), "relu")
    x = net.act(net.conv(x, 64, 32, 1, bias=True), "relu")
    return _classifier_output(net, net.conv(x, 32, 3, 5, bias=True))


def _yolov5(net, size, depth, width, decode=True):
    """ultralytics/yolov5 (v6.x, the models/yolov5{n,s,m,l}.yaml): a 6x6/2 stem, C3 stages of 3, 6, 9 and 3
    bottlenecks (times ``depth``, at least 1), SPPF, the PAN neck (nearest 2x upsampling, Concat, C3 without
    shortcuts), and the Detect head as export.py writes it for ONNX: per scale a 1x1 conv to 3 x 85
    channels, Reshape + Transpose to [1, 3, H, W, 85], Sigmoid, the box decode (xy * 2 - 0.5 + grid times
    the stride, (wh * 2)^2 times the anchors: Split, Mul, Add, Pow, Concat), Reshape to [1, 3HW, 85]; the
    three scales concatenated (``decode=False``: the three 1x1 convs' outputs, the model forward alone).
    Every conv is Conv + BN + SiLU (x * Sigmoid(x)); widths rounded up to 8."""
    import math

    import numpy as np
    from profilers.zoo import _classifier_output, _image_input

    def ch(c):
        return int(math.ceil(c * width / 8) * 8)

    def reps(n):
        return max(round(n * depth), 1)

    def conv(x, cin, cout, k=1, s=1):
        return net.cba(x, cin, cout, k, s, act="swish")

    def c3(x, cin, cout, n, shortcut=True):
        c_ = cout // 2
        a = conv(x, cin, c_)
        for _ in range(n):
            y = conv(conv(a, c_, c_), c_, c_, 3)
            a = net.op("Add", [a, y]) if shortcut else y
        b = conv(x, cin, c_)
        return conv(net.op("Concat", [a, b], axis=1), 2 * c_, cout)

    def up(x):
        return net.op("Resize", [x, "", net.const([1.0, 1.0, 2.0, 2.0], np.float32)], mode="nearest")

    x = conv(_image_input(net, size), 3, ch(64), 6, 2)
    x = conv(x, ch(64), ch(128), 3, 2)
    x = c3(x, ch(128), ch(128), reps(3))
    x = conv(x, ch(128), ch(256), 3, 2)
    p3 = c3(x, ch(256), ch(256), reps(6))
    x = conv(p3, ch(256), ch(512), 3, 2)
    p4 = c3(x, ch(512), ch(512), reps(9))
    x = conv(p4, ch(512), ch(1024), 3, 2)
    x = c3(x, ch(1024), ch(1024), reps(3))
    c_ = ch(1024) // 2                                     # SPPF(k=5)
    y0 = conv(x, ch(1024), c_)
    y1 = net.maxpool(y0, 5, 1, p=2)
    y2 = net.maxpool(y1, 5, 1, p=2)
    y3 = net.maxpool(y2, 5, 1, p=2)
    x = conv(net.op("Concat", [y0, y1, y2, y3], axis=1), 4 * c_, ch(1024))
    h10 = conv(x, ch(1024), ch(512))
    x = c3(net.op("Concat", [up(h10), p4], axis=1), 2 * ch(512), ch(512), reps(3), False)
    h14 = conv(x, ch(512), ch(256))
    o3 = c3(net.op("Concat", [up(h14), p3], axis=1), 2 * ch(256), ch(256), reps(3), False)
    x = conv(o3, ch(256), ch(256), 3, 2)
    o4 = c3(net.op("Concat", [x, h14], axis=1), 2 * ch(256), ch(512), reps(3), False)
    x = conv(o4, ch(512), ch(512), 3, 2)
    o5 = c3(net.op("Concat", [x, h10], axis=1), 2 * ch(512), ch(1024), reps(3), False)
    outs = []
    for o, c, stride in ((o3, ch(256), 8), (o4, ch(512), 16), (o5, ch(1024), 32)):
        g = size // stride
        y = net.conv(o, c, 3 * 85, 1, bias=True)
        if not decode:
            outs.append(y)
            continue
        y = net.op("Transpose", [net.op("Reshape", [y, net.const([1, 3, 85, g, g])])], perm=[0, 1, 3, 4, 2])
        y = net.op("Sigmoid", [y])
        xy, wh, conf = net.op("Split", [y, net.const([2, 2, 81])], n_out=3, axis=4)
        grid = net.const(np.zeros((1, 3, g, g, 2), np.float32), np.float32)
        xy = net.op("Mul", [net.op("Add", [net.op("Mul", [xy, net.const(2.0, np.float32)]), grid]),
                            net.const(float(stride), np.float32)])
        anchors = net.const(np.ones((1, 3, 1, 1, 2), np.float32), np.float32)
        wh = net.op("Mul", [net.op("Pow", [net.op("Mul", [wh, net.const(2.0, np.float32)]),
                                           net.const(2.0, np.float32)]), anchors])
        y = net.op("Concat", [xy, wh, conf], axis=4)
        outs.append(net.op("Reshape", [y, net.const([1, 3 * g * g, 85])]))
    if not decode:
        for i, y in enumerate(outs):
            net.output(y, f"p{i + 3}")
        return net.finish()
    return _classifier_output(net, net.op("Concat", outs, axis=1))


class _Ultralytics:
    """The building blocks of ultralytics' YOLOv8 / YOLO11 as exported to ONNX (Conv = Conv + BN + SiLU)."""

    def __init__(self, net, width, max_channels):
        import numpy as np

        self.net, self.width, self.max_channels, self.np = net, width, max_channels, np

    def ch(self, c):
        import math

        return int(math.ceil(min(c, self.max_channels) * self.width / 8) * 8)

    def conv(self, x, cin, cout, k=1, s=1, g=1, act="swish"):
        return self.net.cba(x, cin, cout, k, s, g=g, act=act)

    def split(self, x, sizes, axis=1):
        return self.net.op("Split", [x, self.net.const(list(sizes))], n_out=len(sizes), axis=axis)

    def bottleneck(self, x, c, e=0.5, shortcut=True):
        c_ = int(c * e)
        y = self.conv(self.conv(x, c, c_, 3), c_, c, 3)
        return self.net.op("Add", [x, y]) if shortcut else y

    def c2f(self, x, cin, cout, n, block, e=0.5):
        """C2f (YOLOv8) / C3k2 (YOLO11): cv1 to 2c, split in halves, ``n`` blocks on the last part, every part
        concatenated, cv2 to cout; ``block(x, c)`` is one block."""
        c = int(cout * e)
        ys = list(self.split(self.conv(x, cin, 2 * c), (c, c)))
        for _ in range(n):
            ys.append(block(ys[-1], c))
        return self.conv(self.net.op("Concat", ys, axis=1), (2 + n) * c, cout)

    def sppf(self, x, c1, c2):
        c_ = c1 // 2
        y0 = self.conv(x, c1, c_)
        y1 = self.net.maxpool(y0, 5, 1, p=2)
        y2 = self.net.maxpool(y1, 5, 1, p=2)
        y3 = self.net.maxpool(y2, 5, 1, p=2)
        return self.conv(self.net.op("Concat", [y0, y1, y2, y3], axis=1), 4 * c_, c2)

    def up(self, x):
        return self.net.op("Resize", [x, "", self.net.const([1.0, 1.0, 2.0, 2.0], self.np.float32)], mode="nearest")

    def detect(self, outs, chans, size, dw):
        """The Detect head and its export-time decode: per scale a box branch (two 3x3 convs, a 1x1 to 4 x 16
        DFL bins) and a class branch (two 3x3 convs, or with ``dw`` two depthwise-separable pairs, as YOLO11's;
        a 1x1 to 80 classes); the DFL softmax and its fixed 1x1 conv, distance to box, times the strides, the
        class sigmoid."""
        net, np = self.net, self.np
        c2, c3 = max(16, chans[0] // 4, 64), max(chans[0], 80)
        flat = []
        for o, c in zip(outs, chans):
            box = net.conv(self.conv(self.conv(o, c, c2, 3), c2, c2, 3), c2, 64, 1, bias=True)
            if dw:
                cls = self.conv(self.conv(o, c, c, 3, g=c), c, c3)
                cls = self.conv(self.conv(cls, c3, c3, 3, g=c3), c3, c3)
            else:
                cls = self.conv(self.conv(o, c, c3, 3), c3, c3, 3)
            cls = net.conv(cls, c3, 80, 1, bias=True)
            flat.append(net.op("Reshape", [net.op("Concat", [box, cls], axis=1), net.const([1, 144, -1])]))
        x = net.op("Concat", flat, axis=2)
        anchors = sum((size // s) ** 2 for s in (8, 16, 32))
        box, cls = self.split(x, (64, 80))
        d = net.op("Softmax", [net.op("Transpose", [net.op("Reshape", [box, net.const([1, 4, 16, anchors])])],
                                      perm=[0, 2, 1, 3])], axis=1)
        d = net.op("Conv", [d, net.const(np.arange(16, dtype=np.float32).reshape(1, 16, 1, 1), np.float32)],
                   kernel_shape=[1, 1])                        # the DFL's fixed 1x1 conv (expectation of the bins)
        lt, rb = self.split(net.op("Reshape", [d, net.const([1, 4, anchors])]), (2, 2))
        grid = net.const(np.zeros((1, 2, anchors), np.float32), np.float32)
        x1y1, x2y2 = net.op("Sub", [grid, lt]), net.op("Add", [grid, rb])
        cxy = net.op("Div", [net.op("Add", [x1y1, x2y2]), net.const(2.0, np.float32)])
        wh = net.op("Sub", [x2y2, x1y1])
        dbox = net.op("Mul", [net.op("Concat", [cxy, wh], axis=1),
                              net.const(np.ones((1, anchors), np.float32), np.float32)])
        return net.op("Concat", [dbox, net.op("Sigmoid", [cls])], axis=1)


def _yolov8(net, size, depth, width, max_channels):
    """ultralytics YOLOv8 detection (yolov8.yaml at a scale, the original head of ultralytics < 8.3): C2f
    stages of 3, 6, 6, 3 Bottlenecks (times ``depth``) with shortcuts in the backbone, SPPF, the PAN neck with C2f
    without shortcuts, the Detect head with its export-time decode."""
    from profilers.zoo import _classifier_output, _image_input

    u = _Ultralytics(net, width, max_channels)
    ch = u.ch

    def reps(n):
        return max(round(n * depth), 1) if n > 1 else n

    def blk(shortcut):
        return lambda x, c: u.bottleneck(x, c, e=1.0, shortcut=shortcut)

    x = u.conv(_image_input(net, size), 3, ch(64), 3, 2)
    x = u.conv(x, ch(64), ch(128), 3, 2)
    x = u.c2f(x, ch(128), ch(128), reps(3), blk(True))
    x = u.conv(x, ch(128), ch(256), 3, 2)
    p3 = u.c2f(x, ch(256), ch(256), reps(6), blk(True))
    x = u.conv(p3, ch(256), ch(512), 3, 2)
    p4 = u.c2f(x, ch(512), ch(512), reps(6), blk(True))
    x = u.conv(p4, ch(512), ch(1024), 3, 2)
    x = u.c2f(x, ch(1024), ch(1024), reps(3), blk(True))
    p5 = u.sppf(x, ch(1024), ch(1024))
    h12 = u.c2f(net.op("Concat", [u.up(p5), p4], axis=1), ch(1024) + ch(512), ch(512), reps(3), blk(False))
    o3 = u.c2f(net.op("Concat", [u.up(h12), p3], axis=1), ch(512) + ch(256), ch(256), reps(3), blk(False))
    x = u.conv(o3, ch(256), ch(256), 3, 2)
    o4 = u.c2f(net.op("Concat", [x, h12], axis=1), ch(256) + ch(512), ch(512), reps(3), blk(False))
    x = u.conv(o4, ch(512), ch(512), 3, 2)
    o5 = u.c2f(net.op("Concat", [x, p5], axis=1), ch(512) + ch(1024), ch(1024), reps(3), blk(False))
    return _classifier_output(net, u.detect((o3, o4, o5), (ch(256), ch(512), ch(1024)), size, dw=False))


def _yolo11(net, size, depth, width, max_channels):
    """ultralytics YOLO11 detection (yolo11.yaml at a scale: depth, width, max channels), as exported to ONNX:
    C3k2 (a C2f whose blocks are Bottlenecks at half width, or C3k blocks of two Bottlenecks on the m/l/x
    scales); SPPF; C2PSA (a position-sensitive attention block: 1x1 qkv conv, per-head Q^T K softmax attention
    over the H*W positions, V's 3x3 depthwise positional conv, 1x1 projection, a two-conv FFN, both residual);
    the PAN neck; the Detect head with depthwise-separable class branches and its export-time decode."""
    import numpy as np
    from profilers.zoo import _classifier_output, _image_input

    u = _Ultralytics(net, width, max_channels)
    ch, conv = u.ch, u.conv

    def reps(n):
        return max(round(n * depth), 1) if n > 1 else n

    def c3k(x, c):
        c_ = c // 2
        a = conv(x, c, c_)
        for _ in range(2):
            a = u.bottleneck(a, c_, e=1.0)
        return conv(net.op("Concat", [a, conv(x, c, c_)], axis=1), 2 * c_, c)

    def c3k2(x, cin, cout, n, use_c3k, e=0.5):
        return u.c2f(x, cin, cout, n, c3k if use_c3k else (lambda y, c: u.bottleneck(y, c)), e=e)

    def attention(x, dim, hw):
        heads = max(dim // 64, 1)
        hd, kd = dim // heads, int(dim // heads * 0.5)
        qkv = conv(x, dim, dim + 2 * kd * heads, act=None)
        q, k, v = u.split(net.op("Reshape", [qkv, net.const([1, heads, 2 * kd + hd, hw])]), (kd, kd, hd), axis=2)
        a = net.op("MatMul", [net.op("Transpose", [q], perm=[0, 1, 3, 2]), k])
        a = net.op("Softmax", [net.op("Mul", [a, net.const(kd ** -0.5, np.float32)])], axis=-1)
        o = net.op("MatMul", [v, net.op("Transpose", [a], perm=[0, 1, 3, 2])])
        side = int(round(hw ** 0.5))
        o = net.op("Reshape", [o, net.const([1, dim, side, side])])
        vi = net.op("Reshape", [v, net.const([1, dim, side, side])])
        o = net.op("Add", [o, conv(vi, dim, dim, 3, g=dim, act=None)])
        return conv(o, dim, dim, act=None)

    def c2psa(x, c1, n, hw):
        c = c1 // 2
        a, b = u.split(conv(x, c1, 2 * c), (c, c))
        for _ in range(n):
            b = net.op("Add", [b, attention(b, c, hw)])
            b = net.op("Add", [b, conv(conv(b, c, 2 * c), 2 * c, c, act=None)])
        return conv(net.op("Concat", [a, b], axis=1), 2 * c, c1)

    big = max_channels < 1024 or width > 0.5   # the m / l / x scales: every C3k2 with C3k blocks
    x = conv(_image_input(net, size), 3, ch(64), 3, 2)
    x = conv(x, ch(64), ch(128), 3, 2)
    x = c3k2(x, ch(128), ch(256), reps(2), big, e=0.25)
    x = conv(x, ch(256), ch(256), 3, 2)
    p3 = c3k2(x, ch(256), ch(512), reps(2), big, e=0.25)
    x = conv(p3, ch(512), ch(512), 3, 2)
    p4 = c3k2(x, ch(512), ch(512), reps(2), True)
    x = conv(p4, ch(512), ch(1024), 3, 2)
    x = c3k2(x, ch(1024), ch(1024), reps(2), True)
    x = u.sppf(x, ch(1024), ch(1024))
    p5 = c2psa(x, ch(1024), reps(2), (size // 32) ** 2)
    h13 = c3k2(net.op("Concat", [u.up(p5), p4], axis=1), ch(1024) + ch(512), ch(512), reps(2), big)
    o3 = c3k2(net.op("Concat", [u.up(h13), p3], axis=1), ch(512) + ch(512), ch(256), reps(2), big)
    x = conv(o3, ch(256), ch(256), 3, 2)
    o4 = c3k2(net.op("Concat", [x, h13], axis=1), ch(256) + ch(512), ch(512), reps(2), big)
    x = conv(o4, ch(512), ch(512), 3, 2)
    o5 = c3k2(net.op("Concat", [x, p5], axis=1), ch(512) + ch(1024), ch(1024), reps(2), True)
    return _classifier_output(net, u.detect((o3, o4, o5), (ch(256), ch(512), ch(1024)), size, dw=True))


#: architectures built here (not named zoo entries), each as the network its published figure ran
BUILDERS = {
    "resnext50_32x4d": lambda net, size: _resnet_family(net, size, (3, 4, 6, 3), _resnext_block),
    "seresnet50": lambda net, size: _resnet_family(net, size, (3, 4, 6, 3), _se_block),
    "resnet152": lambda net, size: zoo_resnet(net, size, (3, 8, 36, 3)),
    "wide_resnet101_2": lambda net, size: _resnet_family(net, size, (3, 4, 23, 3), _wide_block),
    "resnet50_keras": lambda net, size: _resnet_family(net, size, (3, 4, 6, 3), _keras_v1_block),
    "resnet101_keras": lambda net, size: _resnet_family(net, size, (3, 4, 23, 3), _keras_v1_block),
    "mobilenet_v1": lambda net, size: _mobilenet_v1(net, size),
    "srcnn_x4": lambda net, size: _srcnn(net, size),
    "resnext101_32x8d": lambda net, size: _resnet_family(
        net, size, (3, 4, 23, 3), lambda *a: _resnext_block(*a, width_per_group=8)),
    # timm / torchvision RegNetX-1.6GF: stage widths and depths of regnetx_016, group width 24
    "regnetx_016": lambda net, size: _regnet_x016(net, size),
    # ultralytics/yolov5 v6.x at depth / width multiples of the n, s, m, l yamls
    "yolov5n": lambda net, size: _yolov5(net, size, 0.33, 0.25),
    "yolov5s": lambda net, size: _yolov5(net, size, 0.33, 0.50),
    "yolov5m": lambda net, size: _yolov5(net, size, 0.67, 0.75),
    "yolov5l": lambda net, size: _yolov5(net, size, 1.0, 1.0),
    # ultralytics YOLOv8 (original head) at the scales of yolov8.yaml
    "yolov8n": lambda net, size: _yolov8(net, size, 0.33, 0.25, 1024),
    "yolov8s": lambda net, size: _yolov8(net, size, 0.33, 0.50, 1024),
    "yolov8m": lambda net, size: _yolov8(net, size, 0.67, 0.75, 768),
    "yolov8l": lambda net, size: _yolov8(net, size, 1.00, 1.00, 512),
    "yolov8x": lambda net, size: _yolov8(net, size, 1.00, 1.25, 512),
    # ultralytics YOLO11 at the (depth, width, max channels) of the n, s, m, l, x scales of yolo11.yaml
    "yolo11n": lambda net, size: _yolo11(net, size, 0.50, 0.25, 1024),
    "yolo11s": lambda net, size: _yolo11(net, size, 0.50, 0.50, 1024),
    "yolo11m": lambda net, size: _yolo11(net, size, 0.50, 1.00, 512),
    "yolo11l": lambda net, size: _yolo11(net, size, 1.00, 1.00, 512),
    "yolo11x": lambda net, size: _yolo11(net, size, 1.00, 1.50, 512),
    "yolov5n_raw": lambda net, size: _yolov5(net, size, 0.33, 0.25, decode=False),
    "yolov5s_raw": lambda net, size: _yolov5(net, size, 0.33, 0.50, decode=False),
    "yolov5m_raw": lambda net, size: _yolov5(net, size, 0.67, 0.75, decode=False),
    "yolov5l_raw": lambda net, size: _yolov5(net, size, 1.0, 1.0, decode=False),
}


def _regnet_x016(net, size):
    from profilers import zoo

    return zoo._regnet_x(net, size=size, widths=(72, 168, 408, 912), depths=(2, 4, 10, 2), group_width=24)


def build(model: str, seq: int):
    """The architecture at batch 1 and this sequence length / image size, as a loaded graph: a zoo
    entry, BERT-Large, or one of :data:`BUILDERS`."""
    from latency.graph import load_graph
    from profilers import zoo

    if model == "bert_large":  # BERT-Large (24 layers, 1024 hidden, 16 heads) is not a named zoo entry
        proto = zoo._bert(zoo._Net("bert_large", seed=0, batch=1), size=seq, layers=24, hidden=1024, heads=16)
    elif model in BUILDERS:
        proto = BUILDERS[model](zoo._Net(model, seed=0, batch=1), seq)
    else:
        proto = zoo.build(model, size=seq)
    return load_graph(proto)


def kernels_of(target: str, graph, precision: str) -> list:
    """The configs TensorRT's graph of ``graph`` runs on ``target`` in ``precision`` (free ones left out)."""
    from latency import ops
    from latency.fusion import fuse
    from latency.targets import get_target

    rules = get_target(target).fusion_rules().with_precision(precision)
    ks, unc = fuse(graph, rules)
    if unc:
        raise SystemExit(f"{len(unc)} node(s) uncovered, e.g. {unc[0]}")
    return [k.config for k in ks if not ops.get_kind(k.kind).free]


def predict_ms(cfgs, model, io=(0, 0), harness_us: float = 0.0) -> float:
    """Kernels + the per-inference overhead, + the host<->device copies where the figure includes them, +
    the measuring harness's own per-inference cost where the figure includes it (``harness_us``)."""
    copies = model.copy_us(*io)[0] if any(io) else 0.0
    return (sum(model.price(c)[0] for c in cfgs) + model.lat["per_run_us"] + copies + harness_us) / 1000.0


def error(pred: float, pub: float) -> float:
    return pred / pub - 1.0


def summary(rows) -> str:
    if not rows:
        return "none"
    errs = [e for _, _, e in rows]
    within = sum(abs(e) <= 0.25 for e in errs)
    return (f"{len(errs)} figures: median error {100 * statistics.median(errs):+.1f}%, median |error| "
            f"{100 * statistics.median(abs(e) for e in errs):.1f}%, max |error| {100 * max(abs(e) for e in errs):.1f}%, "
            f"{within}/{len(errs)} within +-25%")


def main(argv=None) -> int:
    from latency.cost.gpu import GpuCostModel
    from latency.targets import get_target

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="grid-fit the T4's terms on the fit half, then score both halves")
    args = ap.parse_args(argv)
    t0 = time.time()
    graphs, cfgs = {}, {}
    for p in PUBLISHED:
        key = (p.model, p.seq)
        if key not in graphs:
            graphs[key] = build(p.model, p.seq)
        cfgs[p] = kernels_of(p.target, graphs[key], p.precision)
    spec_t4 = dict(get_target("t4").spec)
    harness = MMDEPLOY_US
    if args.fit:
        fit = [p for p in PUBLISHED if p.half == "fit"]
        loss, terms = fit_terms(fit, cfgs, spec_t4)
        print(f"fitted on the {len(fit)} T4 'fit' figures (mean |log error| {loss:.3f}): {terms}")
        harness = terms.pop("mmdeploy_us")
        spec_t4 = dict(spec_t4, model=terms)
    print(f"{'target':6s} {'model':12s} {'seq':>4s} {'prec':5s} {'half':9s} {'published':>9s} {'estimate':>9s} "
          f"{'error':>7s}  source")
    halves: dict = {}
    for p in PUBLISHED:
        spec = spec_t4 if p.target == "t4" else get_target(p.target).spec
        est = predict_ms(cfgs[p], GpuCostModel(spec), p.io, harness if p.host_timed else 0.0)
        e = error(est, p.ms)
        halves.setdefault(p.half, []).append((p, est, e))
        print(f"{p.target:6s} {p.model[:12]:12s} {p.seq:4d} {p.precision:5s} {p.half:9s} {p.ms:9.3f} {est:9.3f} "
              f"{100 * e:+6.1f}%  {p.source.split(' (')[0]}")
    print()
    for half in ("fit", "held-out", "check", "added"):
        print(f"{half:9s} {summary(halves.get(half, []))}")
    t4 = halves.get("fit", []) + halves.get("held-out", [])
    print(f"{'all T4':9s} {summary(t4)} (fit + held-out)")
    print(f"{'T4+added':9s} {summary(t4 + halves.get('added', []))}")
    for src in sorted({p.source.split(" (")[0] for p, _, _ in halves.get("added", [])}):
        print(f"  added from {src}: {summary([r for r in halves['added'] if r[0].source.split(' (')[0] == src])}")
    added2 = halves.get("added2", [])
    t4_added2 = [r for r in added2 if r[0].target == "t4"]
    print(f"{'added2':9s} {summary(t4_added2)} (T4, found after 'added')")
    for tgt in sorted({p.target for p, _, _ in added2} - {"t4"}):
        print(f"{'added2 ' + tgt:9s} {summary([r for r in added2 if r[0].target == tgt])} (nothing fitted on this card)")
    print(f"{'T4+add2':9s} {summary(t4 + halves.get('added', []) + t4_added2)} (fit + held-out + added + added2)")
    for src in sorted({p.source.split(" (")[0] for p, _, _ in added2}):
        print(f"  added2 from {src}: {summary([r for r in added2 if r[0].source.split(' (')[0] == src])}")
    added3_all = halves.get("added3", [])
    added3 = [r for r in added3_all if r[0].target == "t4"]
    print(f"{'added3':9s} {summary(added3)} (T4: YOLOv5, YOLOv8, YOLO11, BERT fp16/FP32 on TensorRT 7.0; found after "
          f"'added2')")
    for src in sorted({p.source.split(" (")[0] for p, _, _ in added3}):
        print(f"  added3 from {src}: {summary([r for r in added3 if r[0].source.split(' (')[0] == src])}")
    for tgt in sorted({p.target for p, _, _ in added3_all} - {"t4"}):
        print(f"{'added3 ' + tgt:9s} {summary([r for r in added3_all if r[0].target == tgt])} (nothing fitted on this card)")
    t4_all = t4 + halves.get("added", []) + t4_added2 + added3
    print(f"{'T4+all':9s} {summary(t4_all)} (fit + held-out + added + added2 + added3)")
    print()
    print("sources:")
    for s in sorted({p.source for p in PUBLISHED}):
        print(f"  {s}")
    print("model terms (t4):", ", ".join(f"{k}={v['value']}" for k, v in GpuCostModel(spec_t4).terms().items()))
    print(f"mmdeploy's host-timed harness: {harness:g} us per inference, added to its figures' estimates only")
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
