"""Tensor parallelism of the reference decoder over torch.distributed (Megatron-style, as
vLLM's `distributed/` and `model_executor/layers/{linear,vocab_parallel_embedding}.py`):
group.py is the process group and its collectives, plan.py which sizes divide and how each
checkpoint tensor is cut, shard.py the decoder of one rank. See docs/decisions/tensor-parallel.md.
Pipeline parallelism (the decoder's layers in contiguous stages, one process each):
stages.py which layers each stage holds, stage.py the decoder of one stage; the activations
pass between stages with group.py's send / recv. See docs/scale.md."""
