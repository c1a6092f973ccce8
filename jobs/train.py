"""Student SFT on Ray Train with DeepSpeed: `TorchTrainer` workers run reasonguard.train.loop.

    python -m jobs.train --config cluster/configs/train_local.yaml                # local Ray, 2 CPU workers
    ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env cluster/runtime_env.yaml \
        -- python -m jobs.train --config cluster/configs/train_gemma3_4b_gpu.yaml
    kubectl apply -k kuberay/overlays/gpu-prod                                   # RayJob reasonguard-train
    python -m jobs.train --config cluster/configs/train_local.yaml --set launcher=local      # no Ray, one process
    torchrun --nproc-per-node 2 -m jobs.train --config <yaml> --set launcher=local         # no Ray, torchrun

Outputs in `output_dir`: `final/` (the last checkpoint's model, LoRA merged when configured: a
Hugging Face folder that transformers and vLLM load), `train_summary.json` (loss history, steps,
tokens/s), and Ray's run storage (`storage_path`, default `output_dir/ray/<run_name>`) with a
checkpoint per epoch. Running again with the same `run_name` resumes from the latest checkpoint;
a worker lost mid-run restarts the worker group from it (`max_failures`).
"""

from __future__ import annotations

import sys

from reasonguard.config.train import TrainConfig
from pipelines.train import fit, run, storage_path_of, train, train_dataset, training_prompts  # noqa: F401 - the stage body lives in pipelines


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(TrainConfig, run, argv, "python -m jobs.train", "Student SFT on Ray Train + DeepSpeed.")


if __name__ == "__main__":
    sys.exit(main())
