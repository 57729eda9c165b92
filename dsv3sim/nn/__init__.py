"""The executable DeepSeek-V3 model (PyTorch): MLA, DeepSeekMoE with aux-loss-free balancing, MTP, FP8.

Files: layers.py (RMSNorm, Linear, SwiGLU, YaRN RoPE), mla.py (attention, latent KV cache), routing.py (gate,
group-limited top-k, capture_routing), moe.py (experts, MoE), balance.py (bias update, balance losses), mtp.py,
fp8.py (1x128 / 128x128 quantisation, block GEMM), transformer.py (Transformer), checkpoint.py (safetensors,
HF names), generate.py (latent-cache decoding, MTP speculative decoding), train.py (training loop).
Operator functions for the profiler are listed in NOTES.md.
"""
