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
            index = order[start:start + batch_size]
            inputs = train_set.inputs[index].to(device)
            loss = F.cross_entropy(model(inputs), train_set.labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()
