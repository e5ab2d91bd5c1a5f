"""Command line of the engine: `python -m engine COMMAND ...`.

Each command is an `add_<command>(subparsers)` function that declares its arguments and
sets `run` to a function taking the parsed arguments and returning an exit status. To add
a command, write such a function (next to the code it drives) and append it to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from pathlib import Path

from bridge.protocol import DEFAULT_ADDRESS
from engine.files import MissingInput


def add_serve(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the engine server (one compute worker)")
    parser.add_argument("--address", default=DEFAULT_ADDRESS,
                        help=f"ZeroMQ endpoint to listen on (default {DEFAULT_ADDRESS}; "
                        "tcp://127.0.0.1:* picks a free port)")
    parser.add_argument("--keys", type=Path, metavar="DIR",
                        help="CurveZMQ key folder made by `keys`: only authorised clients get "
                        "in. Required to listen beyond loopback")
    parser.add_argument("--pipeline-module", action="append", default=[], metavar="MODULE",
                        help="import MODULE and call its register_pipelines() before serving "
                        "(repeatable; for pipelines that are not part of the engine)")
    parser.add_argument("--models", type=Path, metavar="DIR",
                        help="model bundle folder (default: the repository's models/); "
                        "DIR/partrag serves generate requests, DIR/library library requests, "
                        "when present")
    parser.set_defaults(run=serve)


def serve(args) -> int:
    import zmq

    from engine.server.keys import BindRefused
    from engine.server.server import EngineServer

    for name in args.pipeline_module:
        importlib.import_module(name).register_pipelines()
    from engine.pipelines.registry import DEFAULT_MODELS
    from engine.server.bundle_service import register_installed
    from engine.server.library_service import register_library

    register_installed(args.models or DEFAULT_MODELS)
    register_library(args.models or DEFAULT_MODELS)
    try:
        server = EngineServer(args.address, args.keys)
    except BindRefused as error:
        print(error, file=sys.stderr)
        return 2
    except zmq.ZMQError as error:
        print(f"cannot listen on {args.address}: {error} (is another engine running there?)",
              file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    server.serve()
    return 0


def add_keys(subparsers) -> None:
    from engine.server.keys import DEFAULT_KEYS_DIR

    parser = subparsers.add_parser("keys", help="create CurveZMQ keys for remote clients")
    parser.add_argument("--dir", type=Path, default=DEFAULT_KEYS_DIR,
                        help=f"key folder (default {DEFAULT_KEYS_DIR})")
    parser.add_argument("--client", default="client",
                        help="name of the client keypair to create and authorise")
    parser.set_defaults(run=keys)


def keys(args) -> int:
    from engine.server.keys import create_keys

    try:
        bundle = create_keys(args.dir, args.client)
    except FileExistsError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"engine keys: {args.dir} (serve --keys {args.dir})\n"
          f"client {args.client!r} authorised; copy {bundle} to the client machine and use "
          f"EngineClient(address, keys=<that folder>)")
    return 0


def add_bench(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="measure and print performance figures")
    parser.add_argument("target", help="what to measure",
                        choices=["bridge", "data", "metrics", "fps", "extraction", "generate", "soak",
                                 "batch", "library"])
    parser.add_argument("--jobs", type=int, default=200, help="soak: generate jobs to send")
    parser.add_argument("--model", type=Path, help="generate: the bundle (default: the shipped "
                        "models/partrag); soak, batch: the models folder (default: models/)")
    parser.add_argument("--image", type=Path,
                        help="generate, soak: reference image (default: the demo chair, "
                        "engine/demo_inputs/chair.png)")
    parser.add_argument("--images", type=Path, help="batch: folder of images (default: the "
                        "first view of --limit test objects of data/parts)")
    parser.add_argument("--limit", type=int, default=12, help="batch: images (default 12)")
    parser.add_argument("--parts", type=int, default=4, help="batch: parts per image (default 4)")
    parser.add_argument("--library", type=Path, default=Path("models/library"),
                        help="library: the part library whose embeddings and assets to scale "
                             "up (default models/library)")
    parser.set_defaults(run=bench)


def bench(args) -> int:
    if args.target == "bridge":
        from engine.server.bench import bench_bridge

        bench_bridge()
    elif args.target == "extraction":
        from engine.geometry.extraction import bench_extraction

        bench_extraction()
    elif args.target == "generate":
        from engine.demo import DEMO_IMAGE
        from engine.eval.generation import print_bench_generate
        from engine.pipelines.registry import DEFAULT_MODELS

        return print_bench_generate(args.model or DEFAULT_MODELS / "partrag",
                                    args.image or DEMO_IMAGE)
    elif args.target == "soak":
        from engine.demo import DEMO_IMAGE
        from engine.pipelines.registry import DEFAULT_MODELS
        from engine.server.soak import print_soak

        return print_soak(args.jobs, args.model or DEFAULT_MODELS, args.image or DEMO_IMAGE)
    elif args.target == "batch":
        from engine.batch.bench import print_bench_batch
        from engine.pipelines.registry import DEFAULT_MODELS

        return print_bench_batch(args.model or DEFAULT_MODELS, Path("data/parts"), args.images,
                                 args.limit, args.parts)
    elif args.target == "library":
        from engine.retrieval.scale_bench import print_bench_library

        return print_bench_library(args.library)
    elif args.target == "fps":
        from engine.geometry.bench import bench_fps

        bench_fps()
    elif args.target == "data":
        from engine.data.cli import print_bench_data

        print_bench_data()
    else:
        from engine.eval.bench import print_bench_metrics

        print_bench_metrics()
    return 0


def add_package_commands(subparsers) -> None:
    """The commands each package declares next to the code they drive."""
    from engine import demo
    from engine.batch import cli as batch_cli
    from engine.data import cli as data_cli
    from engine.eval import cli as eval_cli
    from engine.models import parity
    from engine.pipelines import cli as generate_cli, edit_cli
    from engine.retrieval import cli as library_cli
    from engine.training import cli as train_cli, dit_cli, unipart_cli

    for register in (data_cli.register, demo.add_demo, parity.add_parity):
        register(subparsers)
    train = subparsers.add_parser("train", help="train a network (resumable run folders)")
    sub = train.add_subparsers(dest="train_command", required=True)
    dit_cli.register(sub)
    train_cli.register(sub)
    unipart_cli.register(sub)
    for register in (eval_cli.register, library_cli.register, generate_cli.register,
                     edit_cli.register, batch_cli.register):
        register(subparsers)


COMMANDS = [add_serve, add_keys, add_bench, add_package_commands]  # add new commands here


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m engine",
                                     description="Partsmith inference engine")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except MissingInput as missing:
        print(f"{args.command}: {missing}", file=sys.stderr)
        return 2
