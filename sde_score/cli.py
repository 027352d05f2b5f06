"""`sde-score`: the Lightning CLI (fit / validate / test / predict) over ScoreModule and DataModules.

    sde-score fit --config experiments/configs/toy2d.yaml
    sde-score predict --config experiments/configs/toy2d.yaml --ckpt_path outputs/toy2d/checkpoints/last.ckpt
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

os.environ.setdefault("WANDB_MODE", "offline")  # never wait on the network


def main(argv: Optional[List[str]] = None) -> None:
    from pytorch_lightning.cli import LightningCLI

    from .data import ArrayDataModule
    from .module import ScoreModule

    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("--version", "version"):
        from . import SDES, __version__

        print(f"sde_score {__version__}; registered SDEs: {', '.join(SDES.names())}")
        return
    LightningCLI(ScoreModule, ArrayDataModule, subclass_mode_data=True, args=argv,
                 save_config_kwargs={"overwrite": True},
                 # validation/test losses of ssm, ism and energy models need input gradients
                 trainer_defaults={"inference_mode": False},
                 parser_kwargs={"default_env": False})


if __name__ == "__main__":
    main()
