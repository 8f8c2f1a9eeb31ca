"""Image classification: manifests `path,label[,id]`, cross-entropy, top-1 accuracy."""

from __future__ import annotations

from orthograd_cli.errors import CheckpointError, ManifestError, did_you_mean
from orthograd_cli.tasks.base import SetResult, Task


class ClassificationTask(Task):
    name = "classification"
    columns = ("path", "label")
    accuracy_name = "top-1 accuracy"

    def parse_row(self, values, where, info):
        """A label is a class name (when the model has names: names first) or a class index."""
        raw = values["label"]
        if not raw:
            raise ManifestError(f"{where}: empty label")
        num_classes = info.num_classes if info is not None else None
        labels = info.labels if info is not None else None
        if labels is not None and raw in labels:
            return labels.index(raw), ""
        if not raw.lstrip("-").isdigit():
            if labels is None:
                raise ManifestError(f"{where}: label '{raw}' is not a class index",
                                    "use integers, or give class names in model.labels / checkpoint metadata")
            raise ManifestError(f"{where}: unknown class name '{raw}'", did_you_mean(raw, labels) or
                                f"known classes: {', '.join(labels[:10])}")
        if labels is not None and _numbers_unlike_indices(labels):
            # names like "1".."10": "0" could be a mistyped name or an index; guessing would mislabel samples
            raise ManifestError(f"{where}: label '{raw}' is not one of the class names, which are numbers "
                                f"({', '.join(labels[:10])}), so it cannot be read as an index either",
                                "write every label as a class name")
        index = int(raw)
        if num_classes is not None and not 0 <= index < num_classes:
            raise ManifestError(f"{where}: label {index} is out of range", f"labels are 0..{num_classes - 1}")
        return index, ""

    def load_set(self, name, manifest, recipe, info, cache=None):
        from orthograd_cli.tasks.classification.data import load_image_set

        return load_image_set(name, manifest, recipe.data, cache)

    def folder_metadata(self, folder, config, processor):
        from orthograd_cli.tasks.classification.folder import folder_metadata

        return folder_metadata(folder, config, processor)

    def complete_info(self, checkpoint, arch, spec, config):
        from orthograd_cli.models.registry import ModelInfo, classifier_weight_key

        labels = spec.labels or checkpoint.meta_json("labels")
        num_classes = spec.num_classes
        if num_classes is None:
            num_classes = checkpoint.meta_int("num_classes")
        if num_classes is None:
            key = classifier_weight_key(checkpoint.state_dict)
            if key is None:
                raise CheckpointError(f"{checkpoint.path}: cannot infer num_classes", "set model.num_classes")
            num_classes = int(checkpoint.state_dict[key].shape[0])
        if labels is not None and len(labels) != num_classes:
            raise CheckpointError(f"{checkpoint.path}: {len(labels)} labels given for {num_classes} classes",
                                  "model.labels needs one name per class")
        return ModelInfo(arch=arch, num_classes=num_classes, labels=labels, task=self.name, config=config)

    chance_hint = ("check the preprocessing the checkpoint was trained with (data.image_size, data.resize, "
                   "data.mean/std, data.channels), the class order (model.labels) and that this is the trained "
                   "checkpoint")

    def at_chance(self, result, info):
        chance = 1 / info.num_classes
        if result.accuracy <= chance + 0.05:
            return f"(top-1 accuracy {result.accuracy:.3f}, chance {chance:.3f} for {info.num_classes} classes)"
        return None

    def class_of(self, sample):
        return sample.target

    def shape_hint(self, info):
        return "set model.num_classes to match the checkpoint, or the right architecture (model.arch)"

    def mean_loss(self, logits, labels, label_weight=None, sample_weight=None):
        import torch.nn.functional as F

        if label_weight is not None or sample_weight is not None:
            return super().mean_loss(logits, labels, label_weight, sample_weight)
        return F.cross_entropy(logits, labels)

    def per_sample_losses(self, logits, labels):
        import torch.nn.functional as F

        return F.cross_entropy(logits, labels, reduction="none")

    def score(self, model, image_set, batch_size, device):
        from orthograd_cli.metrics.scores import accuracy

        logits, labels = predict(model, image_set, batch_size, device)
        return SetResult(n=len(image_set), accuracy=accuracy(logits, labels),
                         losses=self.per_sample_losses(logits, labels))


def _numbers_unlike_indices(labels: list[str]) -> bool:
    """Class names that are numbers but not their own indices ("1".."10"); "0".."9" in order are harmless."""
    return (any(name.lstrip("-").isdigit() for name in labels)
            and any(name != str(index) for index, name in enumerate(labels)))


def predict(model, image_set, batch_size: int = 256, device: str = "cpu"):
    """(logits, labels) for every sample, in order, evaluated in batches with autograd off."""
    import torch

    was_training = model.training
    model.eval()
    outputs, labels = [], []
    with torch.inference_mode():
        for inputs, batch_labels in image_set.batches(batch_size, device):
            outputs.append(model(inputs).float().cpu())
            labels.append(batch_labels.cpu())
    model.train(was_training)
    if not outputs:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.cat(outputs), torch.cat(labels)


TASK = ClassificationTask()
# the task's loss functions, as the gradient code and the methods call them
mean_loss, per_sample_losses = TASK.mean_loss, TASK.per_sample_losses
