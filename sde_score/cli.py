"""`sde-score`: the Lightning CLI (fit / validate / test / predict) over ScoreModule and DataModules.

    sde-score fit --config experiments/configs/toy2d.yaml
    sde-score predict --config experiments/configs/toy2d.yaml --ckpt_path outputs/toy2d/checkpoints/last.ckpt
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, List, Optional, Set

os.environ.setdefault("WANDB_MODE", "offline")  # never wait on the network


# ScoreModule arguments a checkpoint fixes (a different value is an error) and those a run may set
FIXED_BY_TRAINING = ("sde", "sde_kwargs", "parameterization", "scale_by_sigma", "num_classes", "time_input")
PREDICT_SETTINGS = ("sampler", "sample_seed", "val_sample_images")


def _plain(value: Any) -> Any:
    value = value.as_dict() if hasattr(value, "as_dict") else value
    return {} if value is None else value  # sde_kwargs: None and {} are the same


def _yaml_mapping(text: str) -> dict:
    import yaml

    if os.path.isfile(text):
        text = Path(text).read_text()
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return value if isinstance(value, dict) else {}


def explicit_model_keys(args: List[str]) -> Set[str]:
    """The ScoreModule arguments a command line gives: ``--model.<key>`` flags, ``--model`` mappings and
    the ``model:`` sections of ``--config`` files."""
    keys: Set[str] = set()
    for i, arg in enumerate(args):
        flag, _, inline = arg.partition("=")
        value = inline or (args[i + 1] if i + 1 < len(args) else "")
        if flag.startswith("--model."):
            keys.add(flag[len("--model."):].split(".")[0])
        elif flag == "--model":
            keys.update(_yaml_mapping(value))
        elif flag == "--config":
            model = _yaml_mapping(value).get("model")
            keys.update(model if isinstance(model, dict) else {})
    return keys


def _cli_class(upgrade=None):
    """The LightningCLI class; ``upgrade`` maps a checkpoint's saved hyper-parameters to today's form."""
    from pytorch_lightning.cli import LightningCLI

    from .checkpoints import canonical_class_paths, read_checkpoint

    class ScoreCLI(LightningCLI):
        """LightningCLI whose ``--ckpt_path`` hyper-parameters are read by ``read_checkpoint``: plain data
        and registered classes only, checked before the config parser (which imports class paths) sees
        them."""

        def parse_arguments(self, parser, args) -> None:
            self._raw_args = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
            super().parse_arguments(parser, args)

        def _parse_ckpt_path(self) -> None:
            if not self.config.get("subcommand"):
                return
            sub = self.config.subcommand
            ckpt_path = self.config[sub].get("ckpt_path")
            if not ckpt_path or not Path(ckpt_path).is_file():
                return  # "last", "best", ...: checkpoints this run wrote itself, resolved by Lightning
            ckpt, _ = read_checkpoint(ckpt_path)
            hparams = ckpt.get("hyper_parameters", {})
            hparams = canonical_class_paths(upgrade(hparams) if upgrade is not None else hparams)
            hparams.pop("_instantiator", None)
            given = self.config[sub].get("model")
            explicit = explicit_model_keys(getattr(self, "_raw_args", []))
            for key in FIXED_BY_TRAINING:
                if key in explicit and key in hparams and _plain(given.get(key)) != _plain(hparams[key]):
                    raise ValueError(f"model.{key}={_plain(given.get(key))!r} differs from the checkpoint's "
                                     f"{_plain(hparams[key])!r}: a trained model's {key} cannot change; leave it "
                                     f"out (the checkpoint's is used)")
            for key in PREDICT_SETTINGS:  # what the user gives for this run wins over what training used
                if key in explicit:
                    hparams.pop(key, None)
            if hparams:
                self.config = self.parser.parse_object({sub: {"model": hparams}}, self.config)

    return ScoreCLI


def main(argv: Optional[List[str]] = None) -> None:
    from .data import ArrayDataModule
    from .module import ScoreModule, upgrade_hparams

    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("--version", "version"):
        from . import SDES, __version__

        print(f"sde_score {__version__}; registered SDEs: {', '.join(SDES.names())}")
        return
    _cli_class(upgrade_hparams)(ScoreModule, ArrayDataModule, subclass_mode_data=True, args=argv,
                                save_config_kwargs={"overwrite": True},
                                # validation/test losses of ssm, ism and energy models need input gradients
                                trainer_defaults={"inference_mode": False},
                                parser_kwargs={"default_env": False})


def classifier_main(argv: Optional[List[str]] = None) -> None:
    """`sde-score-classifier`: the same CLI over ClassifierModule (a noise-conditional classifier for
    classifier guidance)."""
    from .classifier_module import ClassifierModule
    from .data import ArrayDataModule

    _cli_class()(ClassifierModule, ArrayDataModule, subclass_mode_data=True, args=argv,
                 save_config_kwargs={"overwrite": True}, parser_kwargs={"default_env": False})


if __name__ == "__main__":
    main()
