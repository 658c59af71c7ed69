"""`nextpatch update`: absorb new good images into a trained model without retraining, or roll back.

    nextpatch update MODEL_DIR --good IMAGES_OR_FOLDERS...   # a new version; the current one is kept
    nextpatch update MODEL_DIR --rollback                    # the previous version again, exactly
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .errors import NextpatchError


def add_parser(sub) -> None:
    """Register `update` on the CLI's subparsers."""
    p = sub.add_parser(
        "update", help="add good images to a model without retraining (or --rollback)",
        description="Mark images as normal: the features of what made them score join the model's accepted "
                    "normals, so they and images like them pass, while what differs from them is scored as "
                    "before (the threshold is kept). Takes seconds, not a training. MODEL_DIR gets a new "
                    "version and keeps the previous one; --rollback restores it.")
    p.add_argument("model", metavar="MODEL_DIR", help="model directory written by `nextpatch train`")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--good", nargs="+", metavar="IMAGE", help="good image files or folders (searched recursively)")
    what.add_argument("--rollback", action="store_true", help="restore the previous version of MODEL_DIR")
    p.add_argument("--device", metavar="DEV", help="'cpu', 'cuda' or 'auto' (default: as trained)")
    p.set_defaults(func=cmd_update)


def update_model(model: str | Path, good, *, device: str | None = None, progress=None):
    """Load MODEL_DIR, absorb `good` (paths, folders or arrays), save it as a new version. Returns the Detector."""
    from .detector import Detector

    good = [good] if isinstance(good, (str, Path)) else list(good)
    detector = Detector.load(model, device=device).update(good, progress=progress)
    files = [Path(g).name for g in good if isinstance(g, (str, Path))]
    if files:  # what was added (the summary's "when" is the update's own)
        detector.training_["updates"][-1]["files"] = files
    detector.save(model, keep_previous=True)
    detector.version_ += 1
    return detector


def cmd_update(args) -> int:
    from .model_io import rollback

    if args.rollback:
        meta = rollback(args.model)
        print(f"{args.model}: version {meta['version']} restored (version {meta['rolled_back_from']} dropped)")
        return 0
    from .data.io import expand_inputs

    paths = expand_inputs(args.good)
    if not paths:
        raise NextpatchError(f"no images found in {' '.join(args.good)}")
    start = time.perf_counter()
    try:
        detector = update_model(args.model, paths, device=args.device)
    except OSError as exc:  # the save: the directory's nextpatch.json still names the version it had
        raise NextpatchError(f"{args.model}: the new version could not be written ({exc}); the model directory "
                             "is unchanged") from None
    info = detector.training_["updates"][-1]
    skipped = len(paths) - info["images"]
    train_s = detector.training_.get("seconds")
    share = f" ({info['seconds'] / train_s:.1%} of the {train_s:.0f} s training)" if train_s else ""
    print(f"{args.model}: version {detector.version_}: {info['images']} good images added in "
          f"{time.perf_counter() - start:.1f} s{share}; {info['rows']} accepted feature rows, radius "
          f"{info['radius']:.3f}; threshold kept; undo with `nextpatch update {args.model} --rollback`"
          + (f"; {skipped} unreadable images skipped" if skipped else ""))
    if skipped:
        print(f"warning: {skipped} of {len(paths)} images could not be read (named above)", file=sys.stderr)
    return 0
