"""``python -m crowdboxes synth``: synthetic street scenes with road signs and their true boxes.

Sample command::

    python -m crowdboxes synth --count 200 --seed 7 --out data/synth --classes "stop=2,yield=1"

Outputs in ``--out``: ``scene_NNNNN.jpg``, ``truth.coco.json`` (COCO with ``sha256`` per image and
``occluded``/``visible`` per box) and ``truth.csv`` (``file_name,label,x,y,w,h``).
"""

from __future__ import annotations

import os

from crowdboxes.cnvrg.stepkit import StepArgumentParser
from crowdboxes.sim.generate import SynthOptions, parse_class_weights, summary, timed_generate


def build_parser() -> StepArgumentParser:
    parser = StepArgumentParser(prog="crowdboxes synth", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="number of scenes (default 200)")
    parser.add_argument("--seed", type=int, default=7, help="same seed, same bytes (default 7)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--classes", default=None,
                        help='class weights, e.g. "stop=2,yield=1" (unnamed classes: 0; default: all equal)')
    parser.add_argument("--empty-share", type=float, default=0.05, help="share of scenes without signs")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        from crowdboxes.errors import CrowdboxesError
        raise CrowdboxesError(f"--jobs {args.jobs}: must be 1 or more")
    weights = parse_class_weights(args.classes)
    options = SynthOptions(count=args.count, seed=args.seed, width=args.width, height=args.height,
                           weights=tuple(weights.items()), empty_share=args.empty_share)
    coco, seconds = timed_generate(args.out, options, args.jobs or os.cpu_count())
    print(f"{summary(coco, seconds)} -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    from crowdboxes.cnvrg.stepkit import run_step
    raise SystemExit(run_step(main))
