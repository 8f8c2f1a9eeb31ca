"""Plain supervised training, used to make the small real models that the demo and tests unlearn."""

from __future__ import annotations


def train_classifier(model, train_set, epochs: int = 8, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                     device: str = "cpu"):
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(train_set) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    for _ in range(epochs):
        order = torch.randperm(len(train_set), generator=generator)
        for start in range(0, len(order), batch_size):
            inputs, labels = train_set.batch(order[start:start + batch_size], device)
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def train_ctc(model, train_set, epochs: int = 30, batch_size: int = 16, lr: float = 2e-3, seed: int = 0,
              device: str = "cpu", progress=None):
    """CTC training of a wav2vec2-family model on a speech set (utterances sorted into length buckets by
    their waveform's length, so padding stays small)."""
    from orthograd_cli.tasks.asr import TASK

    return train_speech(model, train_set, TASK.mean_loss, lambda item: len(item[0]), epochs, batch_size, lr, seed,
                        device, progress)


def train_speech(model, train_set, mean_loss, length, epochs: int = 30, batch_size: int = 16, lr: float = 2e-3,
                 seed: int = 0, device: str = "cpu", progress=None):
    """Training of a speech recogniser with its task's `mean_loss`: AdamW, one-cycle schedule, gradients
    clipped at 5, batches of similar `length(item)` (shuffled batch order every epoch)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    by_length = torch.tensor([length(train_set.item(i)) for i in range(len(train_set))]).argsort()
    batches = [by_length[i:i + batch_size] for i in range(0, len(by_length), batch_size)]
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(batches),
                                                   pct_start=0.15)
    for epoch in range(epochs):
        total = 0.0
        for b in torch.randperm(len(batches), generator=generator).tolist():
            inputs, targets = train_set.batch(batches[b], device)
            loss = mean_loss(model(*inputs), targets)
            total += float(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            schedule.step()
        if progress is not None:
            progress(epoch, total / len(batches))
    return model.eval()
