"""`orthograd merge`: fold a LoRA adapter folder into its base checkpoint. A Hugging Face model folder as
base gives a model folder (its config, processor and tokenizer files copied) that from_pretrained loads."""

from __future__ import annotations

from pathlib import Path

from orthograd_cli.errors import CheckpointError
from orthograd_cli.card import CARD_NAME
from orthograd_cli.models.checkpoint import read_checkpoint, save_checkpoint, write_text_atomic
from orthograd_cli.models.lora import merge_adapter, read_adapter_info
from orthograd_cli.models.registry import check_fits, resolve_model_info
from orthograd_cli.models.hf_folder import copy_companions
from orthograd_cli.outputs import check_output_file, claimed_folder
from orthograd_cli.report import MergeReport


def run_merge(base_path: str, adapter_dir: str, out_path: str, arch: str | None = None,
              ignore_base_hash: bool = False) -> MergeReport:
    base = read_checkpoint(base_path)
    adapter_dir = Path(adapter_dir)
    card = run_card(adapter_dir)
    card_path = Path(out_path) / CARD_NAME if base.is_folder else Path(out_path).with_suffix(".README.md")
    if not base.is_folder:
        check_output_file(out_path, [base_path, adapter_dir], need_bytes=base.nbytes)
        if card is not None:
            check_output_file(card_path, [base_path, adapter_dir, out_path])
    recorded = read_adapter_info(adapter_dir)
    if recorded.get("base_sha256") and recorded["base_sha256"] != base.sha256 and not ignore_base_hash:
        raise CheckpointError(f"{adapter_dir}: adapter was trained on a base with sha256 "
                              f"{recorded['base_sha256'][:12]}…, {base_path} has {base.sha256[:12]}…",
                              "pass the checkpoint it was trained on, or ignore the recorded base hash")
    info = resolve_model_info(base, arch)
    check_fits(base, info)
    trained_on = (recorded.get("metadata") or {}).get("orthograd.arch")
    if trained_on and trained_on != info.arch:
        raise CheckpointError(f"{adapter_dir}: adapter was trained on '{trained_on}', the base is '{info.arch}'",
                              "merge it onto the checkpoint it was trained on")
    merged = merge_adapter(base, info, adapter_dir)
    metadata = recorded.get("metadata") or {**base.metadata, **info.metadata()}
    if "orthograd.sha256.base" in metadata:  # the base merged onto (another one, with --ignore-base-hash)
        metadata = {**metadata, "orthograd.sha256.base": base.sha256}
    if base.is_folder:
        with claimed_folder(out_path, "merge", [base_path, adapter_dir], need_bytes=base.nbytes) as folder:
            save_checkpoint(merged, folder / "model.safetensors", metadata)
            copy_companions(base.path, folder)
            if card is not None:
                write_text_atomic(folder / CARD_NAME, card)
    else:
        save_checkpoint(merged, Path(out_path), metadata)
        if card is not None:
            write_text_atomic(card_path, card)
    return MergeReport(base=str(base_path), adapter=str(adapter_dir), out=str(out_path), base_sha256=base.sha256,
                       tensors=len(merged), card=str(card_path) if card is not None else None)


def run_card(adapter_dir: Path) -> str | None:
    """The model card a forget run wrote into its adapter folder (not peft's own README), as text."""
    from huggingface_hub import ModelCard

    path = adapter_dir / CARD_NAME
    if not path.is_file():
        return None
    try:
        card = ModelCard.load(path)
    except Exception:  # noqa: BLE001 - not a card we can read: merge without it
        return None
    return path.read_text() if card.data.library_name == "orthograd" else None
