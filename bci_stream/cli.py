"""``bci-stream``: run the daemon, replay a file, listen, demo, inspect, bench.

Every command exits 0 on success, 2 on a :class:`~bci_stream.errors.BciStreamError` (with a
one-line message on stderr that says what to do), 1 on anything unexpected, and 128 + the signal
number (130 for Ctrl-C, 143 for SIGTERM) when a second signal forces the exit.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .cli_common import HelpFormatter, SubcommandParser, warn_deprecated
from .errors import BciStreamError, RecordingError, StreamNotFoundError

# Kept in step with bci_stream.replay.DEFAULT_WAIT_CONSUMERS (checked by a test); not imported from there so that
# building the parser does not import pylsl and numpy.
DEFAULT_WAIT_CONSUMERS = 30.0

log = logging.getLogger("bci_stream")


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from .sysinfo import configure_liblsl_log, liblsl_level_for

    configure_liblsl_log(liblsl_level_for(verbose))  # liblsl's own stderr chatter only with -v


def _install_stop_handlers(request_stop: Callable[[], None]) -> None:
    """First SIGINT/SIGTERM asks for a graceful stop; a second one exits at once with 128 + signum."""
    asked = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal asked
        if asked:
            # Forced exit: os._exit, not SystemExit. A Python signal handler runs between two bytecodes of
            # whatever the main thread is doing, and an exception raised there lands in that code: inside a
            # __del__ (e.g. pylsl's StreamOutlet.__del__ while the replay closes its outlets) Python prints
            # "Exception ignored ..." with a traceback and carries on, so the process went on to exit 0;
            # an `except BaseException` on the way would swallow it too. os._exit cannot be caught. It
            # skips interpreter clean-up, which is what a second Ctrl-C asks for; what matters is flushed
            # first (logging handlers, stdio; the daemon's session log is flushed line by line), and the OS
            # closes the LSL and ZeroMQ sockets.
            code = 128 + signum
            log.warning("second %s: exiting at once (exit status %d)", signal.Signals(signum).name, code)
            logging.shutdown()  # flushes (and closes) every logging handler
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing more to save
                    stream.flush()
            os._exit(code)
        asked = True
        request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


# ---------------------------------------------------------------------------- run
def _run_overrides(args: argparse.Namespace) -> list[tuple[str, str, str, Any]]:
    """``(section, key, flag, value)`` for every ``bci-stream run`` option that overrides a config key.

    A value of None means the option was not given (the file's value, or the default, stays).
    """

    def on(flag: bool) -> bool | None:
        return True if flag else None

    return [
        ("model", "path", "--model", args.model),
        ("model", "provider", "--provider", args.provider),
        ("model", "valence", "--valence-model", args.valence_model),
        ("model", "classes", "--classes", args.classes),
        ("eeg", "name", "--eeg-name", args.eeg_name),
        ("eeg", "source_id", "--eeg-source-id", args.eeg_source_id),
        ("markers", "name", "--markers-name", args.markers_name),
        ("markers", "source_id", "--markers-source-id", args.markers_source_id),
        ("publish", "endpoint", "--endpoint", args.endpoint),
        ("publish", "log", "--log", args.log),
        ("publish", "insecure", "--insecure", on(args.insecure)),
        ("publish", "lsl", "--lsl-outlet", on(args.lsl_outlet)),
        ("publish", "embeddings", "--embeddings", on(args.embeddings)),
        ("runtime", "wait", "--wait", args.wait),
        ("runtime", "until_idle", "--until-idle", args.until_idle),
    ]


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .daemon import Daemon

    overrides: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for section, key, flag, value in _run_overrides(args):
        overrides.setdefault(section, {})[key] = value
        flags[f"{section}.{key}"] = flag
    config = load_config(args.config, overrides, flags)  # an invalid value is blamed on its flag, not the file
    daemon = Daemon(config)
    _install_stop_handlers(daemon.request_stop)

    # SIGHUP: re-read the zero-shot class table at the next status tick (the handler only sets a flag)
    def reload_classes(signum: int, frame: Any) -> None:
        if daemon.zero_shot is not None:
            daemon.zero_shot.request_reload()

    signal.signal(signal.SIGHUP, reload_classes)
    try:
        daemon.serve()
    except StreamNotFoundError:
        if daemon.stopping:  # asked to stop while still waiting for the streams: a clean stop
            log.info("stopped while waiting for the streams")
            return 0
        raise
    return 0


# ---------------------------------------------------------------------------- replay
def cmd_replay(args: argparse.Namespace) -> int:
    import threading

    from .replay import replay_main

    stop = threading.Event()
    _install_stop_handlers(stop.set)
    return replay_main(
        args.file,
        name=args.name,
        source_id=args.source_id,
        speed=args.speed,
        loop=args.loop,
        chunk=args.chunk,
        wait_consumers=args.wait_consumers,
        event_fields=args.event_fields,
        stop_event=stop,
        streams=args.streams,
        start=args.start,
        duration=args.duration,
    )


# ---------------------------------------------------------------------------- listen
def cmd_listen(args: argparse.Namespace) -> int:
    import threading

    from .client import Subscriber, SubscriberTimeout
    from .listen import ValenceScale, format_message

    stop = threading.Event()
    _install_stop_handlers(stop.set)
    shown = 0
    scale = ValenceScale.choose(args.valence_range, args.valence_model)
    with Subscriber(
        args.endpoint,
        args.topics,
        timeout=1.0,
        curve_client_key=args.curve_client_key,
        curve_server_key=args.curve_server_key,
    ) as sub:
        waited = 0.0
        while not stop.is_set():
            try:
                msg = sub.recv(timeout=1.0)
            except SubscriberTimeout:
                waited += 1.0
                if args.timeout and waited >= args.timeout:
                    print(f"no message for {args.timeout:g} s from {args.endpoint}; stopping", file=sys.stderr)
                    return 2
                if waited in (3.0, 10.0) or waited % 30 == 0:
                    print(f"(waiting for messages on {args.endpoint} ...)", file=sys.stderr)
                continue
            waited = 0.0
            print(msg.model_dump_json() if args.json else format_message(msg, scale), flush=True)
            shown += 1
            if args.count and shown >= args.count:
                break
        if sub.gaps:
            print(f"lost messages by topic: {sub.gaps}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- keys
def cmd_keys(args: argparse.Namespace) -> int:
    from .curve import make_keys

    keys = make_keys(args.out, args.clients)
    print(f"daemon:  [publish] curve_secret_key = {str(keys.server_secret)!r}")
    print(f"         [publish] curve_authorized_clients = {str(keys.authorized_clients)!r}")
    for secret in keys.client_secrets:
        print(f"client:  --curve-client-key {secret} --curve-server-key {keys.server_public}")
    print("give each client only its own .key_secret and server.key; add clients later with --clients NAME")
    return 0


# ---------------------------------------------------------------------------- schema
def cmd_schema(args: argparse.Namespace) -> int:
    from .messages import write_json_schemas

    for path in write_json_schemas(args.out):
        print(path)
    return 0


# ---------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        recording=args.recording,
        model=args.model,
        config=args.config,
        speed=args.speed,
        timeout=args.timeout,
        quiet=args.verbose < 0,  # -q/--quiet (shared by every subcommand): only the summary line
        valence_model=args.valence_model,
        offline=args.offline_accuracy,
        event_fields=args.event_fields,
    )


# ---------------------------------------------------------------------------- inspect
def cmd_inspect(args: argparse.Namespace) -> int:
    if args.streams or args.path is None:
        from .lsl import list_streams

        streams = list_streams(wait=args.wait)
        if not streams:
            print(f"no LSL streams visible within {args.wait:g} s")
        for s in streams:
            print(s.summary())
        return 0
    path = Path(args.path)
    if path.suffix == ".onnx":
        from .card import read_card
        from .listen import card_summary

        card = read_card(path)
        if args.json:
            print(card.model_dump_json(by_alias=True, indent=2))
        else:
            print("\n".join(card_summary(card, path=path)))
            print("(the full card: bci-stream inspect MODEL --json)")
        return 0
    if path.suffix.lower() in (".xdf", ".xdfz"):
        from .recordings import describe_xdf, read_xdf_streams

        xdf_streams = read_xdf_streams(path)
        print(f"{path}: {len(xdf_streams)} stream{'s' if len(xdf_streams) != 1 else ''}")
        print("\n".join(describe_xdf(xdf_streams)))
        return 0
    from .recordings import eeglab_event_fields, read_recording

    rec = read_recording(path, event_fields=args.event_fields)
    values: dict[str, int] = {}
    for m in rec.markers:
        values[m.value] = values.get(m.value, 0) + 1
    print(f"{rec.source}: {len(rec.ch_names)} channels at {rec.sfreq:g} Hz, {rec.duration:.1f} s, units {rec.units}")
    print(f"channels: {', '.join(rec.ch_names[:16])}{' ...' if len(rec.ch_names) > 16 else ''}")
    print(f"markers: {len(rec.markers)} ({len(values)} distinct)")
    for value, n in sorted(values.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {n:5d}  {value}")
    if path.name.lower().endswith(".set"):  # EEGLAB: the fields that --event-fields can append to the markers
        try:
            fields = eeglab_event_fields(path)
        except RecordingError as exc:  # a MATLAB v7.3 file: MNE reads its data, scipy not its events
            print(f"event fields: not listed ({exc})")
        else:
            shown = f" (in the markers now: {', '.join(args.event_fields)})" if args.event_fields else ""
            print(
                f"event fields: {', '.join(fields) or 'none'}{shown}; "
                "--event-fields FIELD [FIELD ...] reads them into the markers (type/FIELD=value)"
            )
    return 0


# ---------------------------------------------------------------------------- sys-info
def cmd_sys_info(args: argparse.Namespace) -> int:
    from .sysinfo import sys_info_lines

    print("\n".join(sys_info_lines()))
    return 0


# ---------------------------------------------------------------------------- dashboard
def cmd_dashboard(args: argparse.Namespace) -> int:
    from .dashboard import serve_dashboard

    def ready(url: str) -> None:
        print(f"dashboard on {url} (subscribed to {args.endpoint}); Ctrl-C stops it", flush=True)

    return serve_dashboard(
        endpoint=args.endpoint, port=args.port, model=args.model, history=args.history, on_ready=ready
    )


# ---------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    model = args.model
    if args.legacy_model is not None:  # bci-stream bench --model M: the spelling before the one CLI style
        warn_deprecated("bci-stream bench --model M", "bci-stream bench M")
        model = args.legacy_model
    seconds = 60.0 * args.minutes if args.minutes else args.seconds
    return run_bench(
        model=model,
        repeats=args.repeats,
        batch_sizes=args.batch,
        out=args.out,
        seconds=seconds,
        rates=args.rates,
        aligned=args.aligned,
        baseline=args.baseline,
        config=args.config,
    )


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bci-stream", description=__doc__.splitlines()[0] if __doc__ else None, formatter_class=HelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbose", help="warnings only")
    # every subcommand: the same -v/-q (bci_stream.cli_common) and help that shows defaults
    sub = parser.add_subparsers(dest="command", required=True, parser_class=SubcommandParser)

    run = sub.add_parser("run", help="serve a model on live LSL streams, publish over ZeroMQ")
    run.add_argument("--config", type=Path, default=None, help="daemon TOML config (default: the built-in settings)")
    run.add_argument("--model", type=Path, help="ONNX model with a bci-stream card (overrides [model] path)")
    run.add_argument("--valence-model", type=Path, help="band-power valence model (overrides [model] valence)")
    run.add_argument("--classes", type=Path, help="class table .npz of an embedding model (overrides [model] classes)")
    run.add_argument(
        "--provider",
        choices=["auto", "cuda", "cpu"],
        help="ONNX Runtime provider (default: [model] provider, else auto)",
    )
    run.add_argument("--eeg-name", help="EEG stream name (overrides [eeg] name)")
    run.add_argument("--eeg-source-id", help="EEG stream source_id (overrides [eeg] source_id)")
    run.add_argument("--markers-name", help="marker stream name (overrides [markers] name)")
    run.add_argument("--markers-source-id", help="marker stream source_id (overrides [markers] source_id)")
    run.add_argument("--endpoint", help="ZeroMQ PUB endpoint (default: [publish] endpoint, else tcp://127.0.0.1:5556)")
    run.add_argument("--log", type=Path, help="also write every message to this JSON-lines file")
    run.add_argument(
        "--wait", type=float, help="seconds to wait for the streams to appear (default: [runtime] wait, else 30)"
    )
    run.add_argument(
        "--until-idle",
        type=float,
        metavar="S",
        help="stop (exit 0, every marker answered) after S s without EEG, e.g. when a replay ends "
        "(default: [runtime] until_idle, else never)",
    )
    run.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback endpoint without CURVE keys (warned in status)"
    )
    run.add_argument(
        "--lsl-outlet", action="store_true", help="also publish results as LSL outlets (sets [publish] lsl = true)"
    )
    run.add_argument(
        "--embeddings",
        action="store_true",
        help="an embedding model's predictions also carry the unit embedding (sets [publish] embeddings = true)",
    )
    run.set_defaults(func=cmd_run)

    rp = sub.add_parser("replay", help="play a recording as a fake LSL amplifier (EEG + markers)")
    rp.add_argument("file", type=Path, help="FIF, EDF/BDF, BrainVision (.vhdr), EEGLAB (.set) or XDF file")
    rp.add_argument("--name", help="EEG stream name (default: the file's stem); markers are NAME-markers")
    rp.add_argument("--source-id", help="LSL source_id (default: derived from the file)")
    rp.add_argument("--speed", type=float, default=1.0, help="playback rate: X times real time (2 = twice as fast)")
    rp.add_argument("--loop", action="store_true", help="start again at the end, timestamps continuing")
    rp.add_argument("--chunk", type=int, help="samples per push (default: about 20 ms of samples)")
    rp.add_argument(
        "--wait-consumers",
        type=float,
        default=DEFAULT_WAIT_CONSUMERS,
        metavar="S",
        help="wait up to S s for a consumer (e.g. the daemon's inlets) on every outlet before the first sample; "
        "markers pushed before an inlet connects never reach it (0: play at once)",
    )
    rp.add_argument(
        "--event-fields", nargs="+", metavar="FIELD", help="EEGLAB event fields to append to markers (e.g. position)"
    )
    rp.add_argument("--streams", nargs="+", metavar="NAME", help="XDF: replay only these streams (default: all)")
    rp.add_argument("--start", type=float, default=0.0, metavar="S", help="begin S s into the file")
    rp.add_argument("--duration", type=float, metavar="S", help="play only S s (default: to the end)")
    rp.set_defaults(func=cmd_replay)

    ls = sub.add_parser("listen", help="print the daemon's messages, one readable line each")
    ls.add_argument("--endpoint", default="tcp://127.0.0.1:5556", help="the daemon's ZeroMQ PUB endpoint")
    ls.add_argument(
        "--topics",
        nargs="+",
        default=["prediction", "drop", "valence", "status"],
        metavar="TOPIC",
        help="topics to subscribe to (see `bci-stream schema`)",
    )
    ls.add_argument("--json", action="store_true", help="print raw JSON payloads")
    ls.add_argument(
        "--valence-range",
        nargs=2,
        type=float,
        default=None,
        metavar=("LO", "HI"),
        help="ends of the valence bar (default: the range in --valence-model's card, else grown to fit the values)",
    )
    ls.add_argument("--valence-model", type=Path, help="the valence model served: its card gives the bar's range")
    ls.add_argument("--count", type=int, default=0, metavar="N", help="stop after N messages (0: never)")
    ls.add_argument(
        "--timeout", type=float, default=0.0, metavar="S", help="give up after S s without a message (0: never)"
    )
    ls.add_argument("--curve-client-key", type=Path, help="your NAME.key_secret from `bci-stream keys` (CURVE)")
    ls.add_argument("--curve-server-key", type=Path, help="the daemon's server.key from `bci-stream keys` (CURVE)")
    ls.set_defaults(func=cmd_listen)

    ky = sub.add_parser("keys", help="make CURVE key pairs: one for the daemon, one per client")
    ky.add_argument("--out", type=Path, required=True, help="folder for the keys (made with mode 0700)")
    ky.add_argument(
        "--clients",
        nargs="+",
        default=["client"],
        metavar="NAME",
        help="client names: one key pair each (clients/NAME.key_secret)",
    )
    ky.set_defaults(func=cmd_keys)

    sc = sub.add_parser("schema", help="write the JSON Schema of every topic's payload")
    sc.add_argument(
        "--out", type=Path, default=Path("bci_stream/schemas"), help="folder for the TOPIC.schema.json files"
    )
    sc.set_defaults(func=cmd_schema)

    dm = sub.add_parser("demo", help="replay a recording through the daemon and show predictions")
    dm.add_argument(
        "--recording",
        type=Path,
        default=Path("build/demo.fif"),
        help="recording to replay (write one with `bci-train synth`)",
    )
    dm.add_argument("--model", type=Path, default=Path("exported/cogninet-synth.onnx"), help="ONNX model to serve")
    dm.add_argument(
        "--config",
        type=Path,
        default=Path("configs/daemon.toml"),
        help="daemon TOML config (built-in settings if the file is missing)",
    )
    dm.add_argument("--valence-model", type=Path, help="also serve this band-power valence model")
    dm.add_argument("--speed", type=float, default=1.0, help="replay rate: X times real time (2 = twice as fast)")
    dm.add_argument("--timeout", type=float, default=300.0, metavar="S", help="give up after S s")
    dm.add_argument("--offline-accuracy", action="store_true",
                    help="also score the model on the recording cut offline (offline_accuracy= in the summary)")  # fmt: skip
    dm.add_argument("--event-fields", nargs="+", default=None, metavar="FIELD",
                    help="EEGLAB: event fields to read into the markers of the replay and the offline cut (e.g. "
                         "position) (default: the fields the model card names, input.event_fields, for a .set recording)")  # fmt: skip
    dm.set_defaults(func=cmd_demo)

    ins = sub.add_parser("inspect", help="show a model card, a recording's contents, or the LSL streams")
    ins.add_argument("path", nargs="?", help=".onnx model or recording file; omit to list LSL streams")
    ins.add_argument("--streams", action="store_true", help="list visible LSL streams")
    ins.add_argument("--wait", type=float, default=2.0, help="seconds to look for LSL streams")
    ins.add_argument(
        "--event-fields",
        nargs="+",
        metavar="FIELD",
        help="EEGLAB: event fields to read into the markers (e.g. position)",
    )
    ins.add_argument("--json", action="store_true", help="models: print the whole card as JSON")
    ins.set_defaults(func=cmd_inspect)

    bn = sub.add_parser("bench", help="measure inference time and the daemon's added latency on this machine")
    bn.add_argument("model", type=Path, nargs="?", default=Path("exported/cogninet-synth.onnx"), help="ONNX model")
    bn.add_argument("--model", type=Path, dest="legacy_model", help=argparse.SUPPRESS)  # deprecated spelling
    bn.add_argument("--repeats", type=int, default=100, help="timed inference runs per batch size")
    bn.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[1, 8, 32],
        metavar="N",
        help="batch sizes (epochs per inference) to time",
    )
    bn.add_argument("--out", type=Path, help="write results as JSON here")
    bn.add_argument("--config", type=Path, help="daemon TOML config for the live runs (e.g. other [model] tuning)")
    bn.add_argument("--seconds", type=float, default=20.0, help="length of each live replay (s)")
    bn.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[2.0, 50.0],
        metavar="HZ",
        help="marker rates of the live replays (markers per s, one replay each)",
    )
    bn.add_argument("--minutes", type=float, help="soak: each live replay lasts this many minutes (RSS start/end)")
    bn.add_argument(
        "--aligned",
        action="store_true",
        help="end every window with a chunk (the processing floor; without it onsets fall at random within a chunk)",
    )
    bn.add_argument(
        "--baseline",
        choices=["mne-lsl"],
        help="also measure a hand-built mne-lsl pipeline on the same replay (needs: pip install mne-lsl)",
    )
    bn.set_defaults(func=cmd_bench)

    si = sub.add_parser(
        "sys-info", help="versions of Python, liblsl, pylsl, ONNX Runtime (providers), pyzmq, MNE, numpy"
    )
    si.set_defaults(func=cmd_sys_info)

    db = sub.add_parser("dashboard", help="a live web page of the daemon's ZeroMQ stream (extra 'dashboard')")
    db.add_argument("--endpoint", default="tcp://127.0.0.1:5556", help="the daemon's ZeroMQ endpoint")
    db.add_argument("--port", type=int, default=8080, help="HTTP port on 127.0.0.1 (0: any free port)")
    db.add_argument("--model", type=Path, help="the model served: its card is summarised on the page")
    db.add_argument("--history", type=int, default=20, help="number of latest predictions listed on the page")
    db.set_defaults(func=cmd_dashboard)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except BciStreamError as exc:
        print(f"bci-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
