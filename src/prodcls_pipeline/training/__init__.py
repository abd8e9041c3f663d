"""The one training loop and what it trains: tasks (classification, recovery, distillation),
modes, fine-tunes, samples, the embedding cache, checkpoints, losses, optimizers, adversarial
batches.

- `adversarial`: Adversaries that replace part of each training batch with attacked examples.
- `checkpoints`: A folder holding the latest epoch checkpoint of a training run, so it can be
  resumed.
- `distributed`: Data-parallel training: the one training loop on several processes (and
  machines) with torch.distributed DistributedDataParallel, launched by torchrun (gloo on CPU,
  nccl on CUDA).
- `embedding_cache`: Frozen-backbone outputs, computed once per (backbone, view, image) and cached
  by sha256.
- `frozen_embeddings`: Pooled embeddings of the frozen pretrained backbone, computed once per
  image and view.
- `fine_tune`: Short fine-tunes of a trained classifier on the one training loop (recovery after
  pruning, distillation into a smaller student), and the guard that keeps one only if it raises val
  top-1.
- `loop`: The one training loop behind every mode and every fine-tune: class balance, optimizer,
  schedule, early stopping, gradient clipping, mixed precision, adversarial batches and resumable
  checkpoints. What it optimises is a task (see `training.tasks`): classification with the
  configured loss unless the caller passes another.
- `losses`: Classification losses and class weights for imbalanced training sets.
- `modes`: The three training modes, each a trainable module fed to the one training loop.
- `optim`: Optimizers with layer-wise learning rates, and the learning-rate schedule with warmup.
- `replay`: Replay: what a warm run trains on, so that retraining costs what the drop costs.
- `samples`: What the training loop iterates over: indexed samples, fetched a whole batch at a time.
- `tasks`: What the one training loop optimises, as timm's training tasks: the loss of a batch,
  which modules run in training mode, and what must hold again after every optimizer step. The loop
  (`training.loop.train`) owns the rest: data order, optimizer, schedule, validation, checkpoints.
- `warm_start`: Warm start: a training run that begins from the weights of the registry's
  champion.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "checkpoints": ["CheckpointStore"],
        "frozen_embeddings": ["embed_frozen"],
        "embedding_cache": [
            "CLEAN_VIEW",
            "EmbeddingStore",
            "augmented_view_names",
            "embed_missing",
            "image_seed",
        ],
        "fine_tune": ["FineTune", "fine_tune_if_better"],
        "loop": ["TrainingConfig", "TrainingResult", "resolve_device"],
        "modes": [
            "LabelledSplits",
            "MODES",
            "fit_full",
            "fit_head",
            "fit_partial",
            "run_fingerprint",
            "trainable_in_mode",
        ],
        "replay": ["Replay", "TRAINED_ON", "replay_rows", "trained_on"],
        "samples": ["ImageSamples", "TensorSamples", "ViewImages"],
        "tasks": ["DistillationTask", "RecoveryTask"],
        "warm_start": [
            "WarmStart",
            "WarmTarget",
            "head_initialiser",
            "load_backbone",
            "log_checkpoint",
            "record_tags",
            "resolve_warm_start",
            "warm_config",
        ],
    },
)
