"""`sde-score`: the Lightning CLI (fit / validate / test / predict) over ScoreModule and DataModules.

    sde-score fit --config experiments/configs/toy2d.yaml
    sde-score predict --config experiments/configs/toy2d.yaml --ckpt_path outputs/toy2d/checkpoints/last.ckpt
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("WANDB_MODE", "offline")  # never wait on the network


def _cli_class():
    from pytorch_lightning.cli import LightningCLI

    from .checkpoints import canonical_class_paths, read_checkpoint
    from .module import upgrade_hparams

    class ScoreCLI(LightningCLI):
        """LightningCLI whose ``--ckpt_path`` hyper-parameters are read by ``read_checkpoint``: plain data
        and registered classes only, checked before the config parser (which imports class paths) sees
        them."""

        def _parse_ckpt_path(self) -> None:
            if not self.config.get("subcommand"):
                return
            ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
            if not ckpt_path or not Path(ckpt_path).is_file():
                return  # "last", "best", ...: checkpoints this run wrote itself, resolved by Lightning
            ckpt, _ = read_checkpoint(ckpt_path)
            hparams = canonical_class_paths(upgrade_hparams(ckpt.get("hyper_parameters", {})))
            hparams.pop("_instantiator", None)
            if hparams:
                self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)

    return ScoreCLI


def main(argv: Optional[List[str]] = None) -> None:
    from .data import ArrayDataModule
    from .module import ScoreModule

    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("--version", "version"):
        from . import SDES, __version__

        print(f"sde_score {__version__}; registered SDEs: {', '.join(SDES.names())}")
        return
    _cli_class()(ScoreModule, ArrayDataModule, subclass_mode_data=True, args=argv,
                 save_config_kwargs={"overwrite": True},
                 # validation/test losses of ssm, ism and energy models need input gradients
                 trainer_defaults={"inference_mode": False},
                 parser_kwargs={"default_env": False})


if __name__ == "__main__":
    main()
