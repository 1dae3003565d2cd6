"""The `latency` command: thin wrappers that call one library function each and format the result."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import click

from .errors import LatencyError

_DEBUG = os.environ.get("LATENCY_DEBUG") == "1"


class _Group(click.Group):
    """Turns library errors into one line and a non-zero exit (no traceback)."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:  # an unknown option of `latency` itself: one line, as for a command's
            if type(e).__name__ == "NoArgsIsHelpError":
                raise
            click.echo(f"error: {' '.join(e.format_message().split())} (see '{ctx.command_path} --help')", err=True)
            sys.exit(2)

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None:
            _refuse_repeated(cmd, rest)
        return name, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LatencyError as e:
            if _DEBUG:
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # output piped into `head` and closed early: not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except click.UsageError as e:  # a bad or missing option or argument: one line too, naming it
            if type(e).__name__ == "NoArgsIsHelpError":  # a group named alone: its help, as click shows it
                raise
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {' '.join(e.format_message().split())}{hint}", err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except OSError as e:  # a file that cannot be written or read (no such folder, disk full, no permission)
            if _DEBUG:
                raise
            what = e.strerror or (str(e).splitlines() or [type(e).__name__])[0]
            click.echo(f"error: {what}" + (f": {e.filename}" if e.filename else ""), err=True)
            sys.exit(2)
        except Exception as e:  # last resort: still one line
            if _DEBUG:
                raise
            msg = str(e).splitlines()[0] if str(e) else ""
            click.echo(f"error: {type(e).__name__}: {msg} (set LATENCY_DEBUG=1 for details)", err=True)
            sys.exit(1)


def _refuse_repeated(cmd, args) -> None:
    """An option that takes one value given more than once (click keeps the last and drops the others
    without a word): a usage error naming it."""
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.multiple or p.count or p.is_flag:
            continue
        seen = []
        for tok in args:
            if tok == "--":
                break
            for o in p.opts:
                if tok == o or (o.startswith("--") and tok.startswith(o + "=")):
                    seen.append(tok.split("=", 1)[0])
        if len(seen) > 1:
            raise click.UsageError(f"{seen[0]} given {len(seen)} times: it takes one value, give it once")


def _parse_duration(s: str | None) -> float | None:
    if s is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", s)
    if not m:
        raise LatencyError(f"bad duration {s!r}; use e.g. 90s, 30m, 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _parse_shapes(items) -> dict:
    out = {}
    for it in items:
        name, eq, dims = it.rpartition("=")
        if not eq or not name or not re.fullmatch(r"\d+(x\d+)*", dims):
            raise LatencyError(f"bad --shape {it!r}; use INPUT=1x3x224x224 (a whole input) or DIM=224 (a named dim)")
        if name in out:
            raise LatencyError(f"--shape {name} given twice ({'x'.join(map(str, out[name]))} and {dims}): give it once")
        out[name] = [int(d) for d in dims.split("x")]
    return out


def _parse_trip_counts(items) -> dict:
    out = {}
    for it in items:
        name, eq, n = it.rpartition("=")
        if not eq or not name or not re.fullmatch(r"\d+", n):
            raise LatencyError(f"bad --trip-count {it!r}; use NAME=N (N iterations, a whole number)")
        out[name] = int(n)
    return out


def _core_option(ctx, param, core):
    """--core, when given: a core this process can run on (os.sched_getaffinity), else one line listing them."""
    if ctx.get_parameter_source(param.name) is click.core.ParameterSource.DEFAULT:
        return core
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if core < 0 or (allowed is not None and core not in allowed):
        valid = f"; valid cores: {', '.join(map(str, allowed))}" if allowed is not None else ""
        raise click.BadParameter(f"this process cannot run on core {core}{valid}")
    return core


def _csv(s):
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


@click.group(cls=_Group)
@click.version_option(package_name="latency")
def main():
    """Latency predictor and profiling database for ONNX models."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def targets(as_json):
    """List the targets that can be named, with every profile of each and where it came from."""
    from .profiles import discover, host_device, shipped_dir, user_profiles_dir
    from .targets import choose_default, targets as all_targets

    host = host_device()
    profiles = discover()
    default, default_info, note = choose_default()
    rows = []
    for t in all_targets().values():
        mine = [p for p in profiles if p.target == t.name]
        if mine:
            provenance = [p.to_dict() for p in mine]
        elif t.spec:
            provenance = [{"provenance": "derived", "origin": "spec sheet", "source": t.spec.get("source"),
                           "sources": t.spec.get("sources", {}), "path": None}]
        else:
            provenance = []
        rows.append({"name": t.name, "description": t.description, "device": t.device, "runtime": t.runtime,
                     "provider": t.provider, "threads": t.threads, "this_host_kind": t.describes_host(host),
                     "default": t.name == default.name, "profiles": provenance})
    if as_json:
        click.echo(json.dumps({"host": host, "shipped_dir": str(shipped_dir()), "user_dir": str(user_profiles_dir()),
                               "default_profile": default_info.path if default_info else None,
                               "default_note": note, "targets": rows}, indent=1))
        return
    for r in rows:
        mark = " [default here]" if r["default"] else ""
        click.echo(f"{r['name']:16s} {r['description']}{mark}")
        if not r["profiles"]:
            click.echo("                 no profile: build one with "
                       f"'latency profile --target {r['name']} --db FILE' on such a device")
        for p in r["profiles"]:
            if p["provenance"] == "derived" and p.get("path") is None:
                click.echo(f"                 derived from {p['source']} (no measurement)")
                continue
            d = p["device"]
            caches = ", ".join(f"{lab} {d[k]:g} MB" for k, lab in (("l2_mb", "L2"), ("llc_mb", "LLC")) if d.get(k))
            model = p.get("device_name") or d.get("cpu_model") or "?"  # vendor, model, clock, cores used
            click.echo(f"                 {p['origin']:7s} {p['provenance']} on {model} ({', '.join(d.get('cpu_flags') or [])}"
                       + (f"; {caches}" if caches else "") + f"), {d.get('runtime')} {d.get('runtime_version')}, "
                       f"{d.get('threads') or 1} thread; {p['rows_ok']} rows ({p['rows_failed']} failed), "
                       f"{(p['measured_from'] or '?')[:10]} to {(p['measured_to'] or '?')[:10]}")
            click.echo(f"                         {p['path']}")
            if p["provenance"] != "measured" and p.get("note"):
                click.echo(f"                         {p['note']}")
    if note:
        click.echo(f"note: {note}")


@main.command()
def ops():
    """List the op kinds of the registry and the ONNX ops each prices."""
    from .ops import kinds

    for k in kinds().values():
        click.echo(f"{k.name:14s} {', '.join(k.onnx_ops)}")


#: the largest input `latency zoo` writes (batch x size^2): 64 images of 1024 x 1024
MAX_ZOO_PIXELS = 64 * 1024 * 1024


@main.command()
@click.argument("name", required=False)
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False), help="ONNX file to write")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--size", default=None, type=click.IntRange(min=1), help="input resolution (pixels) or sequence length")
def zoo(name, out, batch, size):
    """Write a real architecture (random weights) as ONNX; without NAME, list them."""
    from profilers import zoo as z

    if not name:
        given = [f for f, v in (("-o", out), ("--batch", batch != 1), ("--size", size)) if v]
        if given:
            raise click.UsageError(f"{', '.join(given)} apply to the model NAME writes; without NAME the command "
                                   "only lists the architectures")
        click.echo("\n".join(z.NAMES))
        return
    if name not in z.NAMES:
        raise LatencyError(f"unknown zoo model {name!r}; valid: {', '.join(z.NAMES)}")
    import onnx

    from pathlib import Path

    if out is not None and not str(out).strip():
        raise LatencyError("-o names no file: give a path (default: NAME.onnx here)")
    out = out or f"{name}.onnx"
    if not Path(out).parent.is_dir():
        raise LatencyError(f"cannot write {out}: the folder {Path(out).parent} does not exist")
    if batch * (size or 1) ** 2 > MAX_ZOO_PIXELS:  # a resolution no real input has: refused before allocating
        raise LatencyError(f"--batch {batch} --size {size}: beyond what the zoo writes (batch x size^2 at most "
                           f"{MAX_ZOO_PIXELS:,}); give a smaller --size or --batch")
    try:
        m = z.build(name, batch=batch, size=size)
    except MemoryError:
        raise LatencyError(f"--size {size} --batch {batch}: {name} at that size does not fit in this host's memory; "
                           "give a smaller --size or --batch") from None
    except onnx.shape_inference.InferenceError:
        if size is None:
            raise
        raise LatencyError(f"--size {size} is too small an input for {name}: its layers shrink it to nothing "
                           f"(give a bigger --size, or none for its default)") from None
    except ValueError as e:  # a size the architecture cannot take (a transformer's position table)
        raise LatencyError(f"--size {size} for {name}: {e}") from None
    onnx.save(m, out)
    click.echo(f"wrote {out}")


def _refuse_shipped(db) -> None:
    """A LatencyError when ``db`` lies inside the shipped profiles (an installed package's data), unless
    LATENCY_CURATE_SHIPPED=1 says a maintainer is curating them in a source checkout."""
    from .profiles import is_shipped

    if is_shipped(db) and os.environ.get("LATENCY_CURATE_SHIPPED") != "1":
        raise LatencyError(f"{db} is a shipped profile, which is never written to: copy it and pass the copy as --db "
                           "(maintainers curating the shipped profiles set LATENCY_CURATE_SHIPPED=1)")


def _gpu_backend():
    from .targets.gpu import gpu_backend

    return gpu_backend()[0]


@main.command()
@click.option("--target", "target_name", required=True, help="target to measure (see `latency targets`)")
@click.option("--db", required=True, type=click.Path(dir_okay=False), help="profiling database (SQLite) to write")
@click.option("--plan", default="quick", show_default=True, help="quick | standard | full | zoo")
@click.option("--model", "models", multiple=True, type=click.Path(dir_okay=False),
              help="measure exactly the fused kernels of this ONNX model instead of a plan (repeatable)")
@click.option("--ops", "ops_", default=None, help="comma-separated op kinds to restrict to")
@click.option("--precision", default=None, help="comma-separated precisions to restrict to")
@click.option("--budget", default=None, help="stop starting new chunks after this long (e.g. 30m)")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="pinned single-thread worker processes")
@click.option("--retry-failed", is_flag=True, help="re-measure rows stored with an error")
@click.option("--chunk", default=100, show_default=True, type=click.IntRange(min=1),
              help="configs per chunk (unit of work and of writing)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.option("--emulate", is_flag=True,
              help="measure a lesser x86 ISA level on this host: onnxruntime runs with AVX-512 (for x86-avx2-ort) "
                   "or AMX hidden by a CPUID mask; the profile is labelled emulated")
@click.option("--ray", "ray_address", default=None,
              help="device farm: run the sweep as shards on the Ray cluster at ADDRESS ('local': start one here "
                   "with --workers workers); each shard's database is shipped back and merged into --db "
                   "(needs pip install 'latency[ray]')")
@click.option("--shards", type=int, default=None, help="with --ray: shards to cut the plan into (default: 4 per worker)")
def profile(target_name, db, plan, models, ops_, precision, budget, workers, retry_failed, chunk, no_progress,
            emulate, ray_address, shards):
    """Measure a sweep plan (or a model's kernels) on a target into a profiling database (resumable)."""
    from profilers.plans import model_kernels, plan as make_plan
    from profilers.sweep import run_sweep

    from .store import Store
    from .targets import get_target

    target = get_target(target_name)
    _refuse_shipped(db)
    budget_s = _parse_duration(budget)  # bad input fails before the database is created
    if budget_s is not None and budget_s <= 0:
        raise LatencyError(f"--budget {budget} measures nothing: give a duration > 0 (e.g. 90s, 30m)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers > cores and ray_address is None:
        raise LatencyError(f"--workers {workers}: this host gives the process {cores} core(s); each worker is pinned to "
                           f"one of its own (valid: 1 to {cores})")
    for opt, val in (("--ops", ops_), ("--precision", precision)):
        if val is not None and not _csv(val):
            raise LatencyError(f"{opt} {val!r} names nothing: give comma-separated names (see 'latency ops')")
    if not models:
        make_plan(plan, _csv(ops_), _csv(precision), target=target)
    if emulate:
        from profilers.emulate import active_level, level_for, run_emulated

        if active_level() is None:  # re-run this very command under the mask, in a child process
            plan_given = click.get_current_context().get_parameter_source("plan") is not \
                click.core.ParameterSource.DEFAULT
            argv = ["profile", "--target", target_name, "--db", db, *(["--plan", plan] if plan_given else []),
                    "--workers", str(workers),
                    "--chunk", str(chunk), "--emulate", *[a for m in models for a in ("--model", m)],
                    *(["--ops", ops_] if ops_ else []), *(["--precision", precision] if precision else []),
                    *(["--budget", budget] if budget else []), *(["--retry-failed"] if retry_failed else []),
                    *(["--no-progress"] if no_progress else [])]
            sys.exit(run_emulated(level_for(target), argv))
    ok, why = target.host_supported()
    if not ok:
        raise LatencyError(why)
    if target.device == "gpu" and _gpu_backend() != "ort-gpu":
        # no onnxruntime-gpu but PyTorch / CuPy: the micro-benchmark mode fits the cost model's terms on this GPU
        from profilers.gpu import calibrate_target

        path = calibrate_target(target, budget_s=budget_s or 300.0)
        click.echo(f"measured the GPU cost model's terms of {target.name} on this GPU: {path}")
        return
    if models:
        if click.get_current_context().get_parameter_source("plan") is not click.core.ParameterSource.DEFAULT:
            raise LatencyError("--plan and --model do not go together: --model profiles the model's own kernels")
        unc: list = []
        plan = model_kernels(list(models), target, tuple(_csv(precision) or ("fp32",)), uncovered=unc)
        if ops_:
            plan = [c for c in plan if c.kind in set(_csv(ops_))]
            if not plan:
                raise LatencyError(f"no kernel of {', '.join(models)} is of the kinds --ops {ops_} names")
        for i, u in unc:  # never silently dropped: what cannot be measured is said
            click.echo(f"warning: {models[i]}: node {u.node!r} [{u.op_type}] is not profiled: {u.reason}", err=True)
        if not plan:
            raise LatencyError(f"no kernel of {', '.join(models)} can be profiled ({len(unc)} node(s) uncovered)")
    if ray_address is not None:
        return _profile_farm(target, db, plan, _csv(ops_), _csv(precision), ray_address, shards, workers, chunk,
                             retry_failed, bad=[o for o, v in (("--emulate", emulate), ("--budget", budget),
                                                               ("--workers", workers != 1 and ray_address != "local"))
                                                if v])
    if shards is not None:
        raise LatencyError("--shards goes with --ray (the device farm)")
    with Store(db) as st:
        try:
            r = run_sweep(st, target, plan, ops=_csv(ops_), precisions=_csv(precision),
                          budget_s=budget_s, workers=workers, retry_failed=retry_failed,
                          chunk_size=chunk, progress=not no_progress, argv=" ".join(sys.argv))
        finally:
            if emulate and st.find_target(target.name) is not None:  # the sweep wrote this host's record
                from profilers.emulate import active_level, note
                from .profiles import host_device, write_device_record

                write_device_record(st, target.name, host_device(), "emulated", note(active_level()))
    click.echo(f"run {r.run_id}: {r.status}; planned {r.planned}, already stored {r.skipped}, measured {r.measured} "
               f"({r.failed} failed) in {r.seconds:.0f}s")
    if r.status == "interrupted":  # what was measured is stored and the next run resumes; a script still sees it
        click.echo("interrupted: run the same command again to resume", err=True)
        sys.exit(130)


def _profile_farm(target, db, plan, ops, precisions, address, shards, workers, chunk, retry_failed, bad):
    """`latency profile --ray`: profilers.farm, one line per shard, then the totals."""
    from profilers.farm import connect, run_farm
    from profilers.plans import plan as make_plan

    from .store import Store

    if bad:
        raise LatencyError(f"{' and '.join(bad)} cannot be used with --ray: the farm runs whole shards on the workers")
    if shards is not None and shards < 1:
        raise LatencyError(f"--shards {shards}: give at least 1 shard")
    if isinstance(plan, str):
        configs = make_plan(plan, ops, precisions, target=target)
    else:
        configs = [c for c in plan if (not ops or c.kind in ops) and (not precisions or c.precision in precisions)]
    ray = connect(address, num_cpus=workers if address == "local" else None)
    n = shards or 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    with Store(db) as st:
        r = run_farm(st, target, configs, n, chunk_size=chunk, retry_failed=retry_failed, argv=" ".join(sys.argv),
                     progress=click.echo)
    bad_n = len(r.failed_shards)
    click.echo(f"{r.planned} configs in {len(r.shards)} shards: {r.already} already stored, "
               f"{sum(s.measured for s in r.shards)} measured, {sum(s.merged.get('added', 0) for s in r.shards)} "
               f"rows added to {db}; {bad_n} failed shard(s) ({r.seconds:.0f} s)")
    if bad_n:
        raise LatencyError(f"{bad_n} shard(s) failed (listed above); run the same command again to measure "
                           "what they left")


@main.group()
def db():
    """Inspect, export and merge profiling databases."""


@db.command()
@click.option("--db", "path", required=True, type=click.Path(dir_okay=False))
@click.option("--target", "target_name", default=None)
def stats(path, target_name):
    """Coverage per op kind, precision and sparsity."""
    from .store import Store

    with Store(path, readonly=True) as st:
        tid = st.find_target(target_name) if target_name else None
        if target_name and tid is None:
            raise LatencyError(f"{path} has no target {target_name!r}; it has: "
                               + ", ".join(sorted({t['name'] for t in st.targets()})))
        df = st.stats(tid)
        click.echo(df.to_string(index=False) if not df.empty else "no measurements")
        click.echo(f"integrity: {st.integrity_check()}")


@db.command()
@click.option("--db", "path", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", default=None, help="csv | jsonl (default: by the --out suffix, .jsonl or else csv)")
def export(path, out, fmt):
    """Export every measurement with its provenance."""
    from .store import Store

    if fmt is None:
        fmt = "jsonl" if str(out).lower().endswith((".jsonl", ".json")) else "csv"

    with Store(path, readonly=True) as st:
        n = st.export(out, fmt)
    click.echo(f"wrote {n} rows to {out}")


@db.command()
@click.option("--db", "path", required=True, type=click.Path(dir_okay=False), help="database to merge into")
@click.option("--keep-both", is_flag=True,
              help="a target name measured on another device there than here: keep both devices, the incoming "
                   "one renamed NAME@<id8> (default: refuse)")
@click.argument("others", nargs=-1, required=True, type=click.Path(dir_okay=False))
def merge(path, others, keep_both):
    """Merge profiles from other machines (or a farm's shards) into one file, keeping provenance.

    Rows are keyed by device fingerprint and config: the same config measured twice on one device is
    one row, the better-settled measurement (a successful row over a failed one, then the lower spread)."""
    from pathlib import Path

    from .store import Store

    _refuse_shipped(path)
    for o in others:  # checked before anything is written
        if not Path(o).is_file():
            raise LatencyError(f"profile database {o} does not exist")
        if Path(path).exists() and (Path(o).resolve() == Path(path).resolve() or os.path.samefile(o, path)):
            raise LatencyError(f"{o} is the database merged into (--db): nothing to merge")
        with Store(o, readonly=True):  # a file that is not a profile fails here, before --db is created
            pass
    new = not Path(path).exists()
    try:
        _merge_all(path, others, keep_both)
    except BaseException:
        if new:  # a merge that failed leaves no database of its own behind
            for f in (path, f"{path}-wal", f"{path}-shm"):
                Path(f).unlink(missing_ok=True)
        raise


def _merge_all(path, others, keep_both):
    from .store import Store

    with Store(path) as st:
        for o in others:
            c = st.merge_from(o, keep_both=keep_both, counts=True)
            ren = "".join(f"; {a} kept as {b} (another device)" for a, b in c["renamed"].items())
            click.echo(f"{o}: {c['targets']} target(s) added, rows: {c['added']} new, {c['replaced']} replaced by a "
                       f"better-settled measurement, {c['kept']} kept as they were{ren}")


@main.command()
@click.option("--target", "target_name", required=True)
@click.option("--db", "path", default=None, type=click.Path(dir_okay=False), help="default: the shipped profile")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="default: <profile>.regressors/")
def train(target_name, path, out):
    """Train the per-op-kind XGBoost regressors from a profile."""
    from pathlib import Path

    from .regressor import train_all
    from .store import Store
    from .targets import get_target

    from .profiles import is_shipped

    t = get_target(target_name)
    p = Path(path) if path else t.profile_path()
    if out is None and is_shipped(p):
        raise LatencyError(f"{p} is a shipped profile, which is never written to: pass --out DIR for the "
                           f"regressors, or train a profile of your own (--db FILE)")
    out = out or str(p.with_name(p.stem + ".regressors"))
    with Store(p, readonly=True) as st:
        tid = st.find_target(t.name)
        if tid is None:
            raise LatencyError(f"{p} has no rows for target {t.name}")
        from .ops import kinds as all_kinds
        from .progress import Bar, wanted

        order = sorted(all_kinds())  # the order train_all goes through the kinds
        with Bar(len(order), "train", enabled=wanted()) as bar:
            rep = train_all(st, tid, out, progress=lambda rec: bar.update(order.index(rec["kind"]) + 1,
                                                                          note=f"{rec['kind']} trained"))
    click.echo(rep.to_string(index=False))
    if not (rep["status"] == "trained").any():
        raise LatencyError(f"no regressor trained: every op kind has too few measured rows in {p} (see above); "
                           f"profile more shapes first ('latency profile --target {t.name} --db {p} --plan standard')")
    click.echo(f"saved to {out}")


@main.command()
@click.option("--target", "target_name", required=True)
@click.option("--db", "path", default=None, type=click.Path(dir_okay=False), help="default: the shipped profile")
@click.option("--core", type=int, default=0, show_default=True, callback=_core_option,
              help="core to pin the measurements to")
@click.option("--refit", is_flag=True, help="measure nothing: refit from the raw data of the last calibration")
@click.option("--from", "base", default=None,
              help="transfer: a profile (FILE.db) or target measured on another device; probes measured here scale "
                   "it into a profile of this host (--db, default in the user profile directory)")
@click.option("--budget", default="10m", show_default=True,
              help="with --from: the time the whole transfer may take (0: no probe, the base scaled by the two devices' "
                   "descriptions)")
@click.option("--max-probes", type=int, default=None, help="with --from: measure at most this many probes")
@click.option("--int8-context", "int8_ctx", is_flag=True,
              help="add in-model curves of their own for static int8 kernels to the profile's calibrated context "
                   "model: six models quantized with quantize_static, timed inside the model here (~1 minute)")
def calibrate(target_name, path, core, refit, base, budget, max_probes, int8_ctx):
    """Fit the in-model context and overhead models from whole models run on this device; with --from,
    first make this device's profile from another device's and a budget of probes (transfer)."""
    from profilers.calibrate import calibrate as run
    from profilers.measure import pin_to_core

    from .targets import get_target

    from .profiles import is_shipped

    if path is not None and not Path(path).parent.is_dir():
        raise LatencyError(f"--db {path}: the folder {Path(path).parent} does not exist")
    t = _calibrate_target(target_name, base, path)
    if t.pinned_profile and path is None:
        path = t.pinned_profile  # a device-named profile: it is the one written
    if base is not None:
        if refit:
            raise LatencyError("--refit and --from do not go together: --from measures probes and calibrates")
        if int8_ctx:
            raise LatencyError("--int8-context and --from do not go together: make the profile with --from first, "
                               "then add the int8 curves to it with --db FILE --int8-context")
        from profilers.transfer import resolve_base

        resolve_base(base, t)  # a bad --from says so before the budget is checked
        return _transfer(t, base, path, _parse_duration(budget), core, max_probes)
    given = [o for o, p in (("--budget", "budget"), ("--max-probes", "max_probes"))
             if click.get_current_context().get_parameter_source(p) is not click.core.ParameterSource.DEFAULT]
    if given:
        raise LatencyError(f"{' and '.join(given)} go{'es' if len(given) == 1 else ''} with --from (a transfer from "
                           "another device's profile)")
    ok, why = t.host_supported()
    if not ok and not refit:
        raise LatencyError(why)
    if is_shipped(path or t.profile_path()):
        raise LatencyError(f"{path or t.profile_path()} is a shipped profile, which is never written to: copy its "
                           f"rows into one of your own first ('latency db merge --db my.db {t.profile_path()}') "
                           f"and pass --db my.db")
    if not refit:
        pin_to_core(core)
    if int8_ctx:
        if refit:
            raise LatencyError("--int8-context measures; it does not go with --refit")
        from profilers.calibrate import int8_context

        r = int8_context(t, profile=path, progress=lambda m: click.echo(m, err=True))
        click.echo(f"int8 in-model curves: {', '.join(f'{k} ({n} kernels)' for k, n in r['curves'].items())} from "
                   f"{r['pairs']} int8 kernel pairs; machine state x{r['state']:.3f} against the calibration "
                   f"-> {r['context']} (pairs kept in {r['raw']}; {r['seconds']:.0f} s)")
        sm = r.get("small") or {}
        if sm.get("ratio"):
            click.echo(f"small Q/DQ kernels (chains of [1, C]): one pair inside a model "
                       f"{', '.join(f'{v:.2f} us at C={c}' for c, v in sorted(sm['pair_us'].items()))}; their prices "
                       f"alone x{min(sm['ratio']):.2f}-{max(sm['ratio']):.2f}")
        return
    from .progress import Bar, wanted

    with Bar(0, "calibrate", enabled=wanted()) as bar:
        # on a terminal the measuring rounds ("phase ...") only update the bar; every other message stays
        def say(msg):
            if bar.enabled and msg.startswith("phase "):
                bar.update(note=msg[:60])
            else:
                bar.echo(msg)

        # the runs divided by the machine's state against the profile's (24 of its rows re-measured around
        # them): a calibration taken in a fast or slow minute of a shared host would shift every estimate
        r = run(t, profile=path, progress=say, refit=refit, reference="profile",
                step=lambda done, total, what: bar.update(done, total=total, note=what))
    click.echo(f"context model: {r['pairs']} kernel pairs from {r['models']} models, cache gate from the "
               f"{r['gate']} -> {r['context']}")
    click.echo(f"weight fetch: {r['stream_us_per_mb']:.1f} us/MB from memory; curves from {r['private_gate_scale']:g}x "
               f"L2, working set x{r['footprint_scale']:g} on the last-level gate")
    per_k = (f"{r['per_short_kernel_us']:.2f} us/short kernel + {r['per_long_kernel_us']:.2f} us/long kernel"
             if r.get("per_long_kernel_us") is not None else f"{r['per_kernel_us']:.2f} us/kernel")
    click.echo(f"overhead model: {r['per_run_us']:.1f} us/run + {per_k} + {r['per_lowint_conv_mb_us']:.2f} us/MB of "
               f"big low-intensity conv weights + {r['per_weight_mb_us']:.2f} us/weight-MB "
               f"(median residual {100 * r['residual_rel_median']:.1f}%) -> {r['overhead']}")
    click.echo(f"raw pairs and end-to-end rounds -> {r['raw']} ({r['seconds']:.0f} s)")


def _calibrate_target(name: str, base: str | None, path: str | None = None):
    """The target ``latency calibrate --target NAME`` writes: a target, an installed device-named profile
    (its family's target pinned to it), or, with ``--from``, a new device name: this host's target family,
    pinned to ``<user profiles>/FAMILY.NAME.db`` (the transfer checks that the base is of that family)."""
    from .errors import UnknownTarget
    from .targets import get_target, host_target

    try:
        return get_target(name)
    except UnknownTarget:
        if base is None or not name:
            raise
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
        raise LatencyError(f"--target {name!r}: a new device name is letters, digits, '-' and '_' (it names the "
                           f"profile file FAMILY.{name}.db)")
    if path is not None:
        raise LatencyError(f"--target {name!r} names a new profile, FAMILY.{name}.db in the user profile folder: "
                           f"leave out --db, or keep --db {path} and give a target ({host_target().name})")
    from dataclasses import replace

    from .profiles import user_profiles_dir

    fam = host_target()
    return replace(fam, pinned_profile=str(user_profiles_dir() / f"{fam.name}.{name}.db"))


def _transfer(t, base, path, budget_s, core, max_probes):
    """`latency calibrate --from`: profilers.transfer under a progress bar, then a summary."""
    from profilers.measure import pin_to_core
    from profilers.transfer import transfer

    from .progress import Bar, wanted

    pin_to_core(core)
    with Bar(0, "transfer", enabled=wanted()) as bar:
        r = transfer(t, base, db=path, budget_s=budget_s, core=core, max_probes=max_probes,
                     progress=lambda msg: bar.update(note=msg[:60]) if bar.enabled and msg.startswith("phase ")
                     else bar.echo(msg), argv=" ".join(sys.argv))
    click.echo(f"profile  {r['db']} ({r['probes']} probes measured here, {r['transferred_rows']} rows transferred "
               f"from {r['base']})")
    if r.get("described"):
        click.echo(f"  no probe: scaled by the device descriptions ({'; '.join(r['described'])})")
    else:
        for line in r["model"].summary()[:12]:
            click.echo(f"  {line}")
    click.echo(f"regressors: {r['regressors']}")
    click.echo(f"context and overhead: {r['context']}")
    click.echo(f"transfer curves -> {r['transfer']}; "
               + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in r["timings"].items()))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", "target_name", default=None, help="default: the profile matching this host")
@click.option("--profile", "profile_path", default=None, type=click.Path(dir_okay=False))
@click.option("--shape", "shapes", multiple=True, help="NAME=1x3x224x224 for inputs with dynamic dims")
@click.option("--batch", type=int, default=None, help="value for a dynamic leading (batch) dim")
@click.option("--top", default=15, show_default=True, type=click.IntRange(min=0), help="kernels to list (0: all)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--strict", is_flag=True, help="fail when any node is uncovered")
@click.option("--trip-count", "trip_counts", multiple=True,
              help="NAME=N: iterations of Loop/Scan node NAME when the graph does not fix them (repeatable)")
@click.option("--decode-step", "decode_step", type=int, default=None,
              help="PAST: one decode step (one new token) of a decoder exported with a key/value cache, over PAST "
                   "cached positions (a prefill: --shape sequence_length=N --shape past_sequence_length=0)")
@click.option("--check-fusion", is_flag=True,
              help="also compare the fusion rules with onnxruntime's own optimized graph (this host's target)")
@click.option("--precision", default=None,
              help="build the model in this precision as the target's runtime would: fp32 | fp16 | int8 | best on "
                   "GPU targets (TensorRT's builder precision); default: as the model is stored (on TensorRT targets an "
                   "fp32 build, as trtexec without --fp16/--int8, plus int8 where the model has Q/DQ)")
def estimate(model, target_name, profile_path, shapes, batch, top, as_json, strict, trip_counts, decode_step,
             check_fusion, precision):
    """Estimate a model's latency on a target, with a per-kernel breakdown."""
    from .estimator import Estimator
    from .targets import choose_default

    shapes = _parse_shapes(shapes)
    if decode_step is not None:
        from .graph import decode_step_shapes

        step = decode_step_shapes(model, decode_step)
        both = sorted(set(step) & set(shapes))
        if both:
            raise LatencyError(f"--decode-step {decode_step} sets {', '.join(both)}, which --shape also gives; "
                               "drop one of them")
        shapes = {**step, **shapes}

    note = ""
    if target_name is not None:  # "" is no target: Estimator says so, with the valid ones
        tname = target_name
    else:
        t, info, note = choose_default()
        tname = t.name
        profile_path = profile_path or (info.path if info else None)
    estimator = Estimator(tname, profile=profile_path, check_host=target_name is not None)
    est = estimator.estimate(model, shapes=shapes or None, batch=batch, strict=strict,
                             trip_counts=_parse_trip_counts(trip_counts) or None, precision=precision)
    if est.uncovered and not any(k.source != "free" for k in est.kernels):
        u = est.uncovered[0]
        raise LatencyError(f"nothing in the model could be priced ({len(est.uncovered)} node(s) uncovered, e.g. "
                           f"{u.node} ({u.op_type}): {u.reason}): a total of 0 ms would mean nothing")
    fusion_check = None
    if check_fusion:
        from profilers.runtime_graph import runtime_kernel_summary  # runs onnxruntime: the measuring side

        fixed = shapes or None
        diff = estimator.check_fusion(model, runtime_kernel_summary(model, shapes=fixed, batch=batch), shapes=fixed,
                                      batch=batch)
        fusion_check = {"agrees": not diff, "differences": {str(k): list(v) if isinstance(v, tuple) else v
                                                            for k, v in diff.items()}}
        msg = ("fusion check: kernels agree with onnxruntime's optimized graph" if not diff else
               "fusion check: differs from onnxruntime's optimized graph (ours, runtime): "
               + "; ".join(f"{k}: {v}" for k, v in list(diff.items())[:8]))
        if not as_json:
            click.echo(msg, err=True)
    if as_json:
        d = est.to_dict()
        if note:
            d["warnings"] = [note] + d["warnings"]
        if fusion_check is not None:
            d["fusion_check"] = fusion_check
        click.echo(json.dumps(d, indent=1))
        return
    for w in ([note] if note else []) + list(est.warnings):
        click.echo(f"warning: {w}", err=True)
    how = "" if target_name is not None else " (the profile closest to this host)"
    click.echo(f"model    {model}\ntarget   {est.target}{how}\nprofile  {est.profile or '-'}"
               + (f"\nfusion   {est.fusion}" if est.fusion else ""))
    click.echo(f"total    {est.total_ms:.3f} ms  = kernels {est.kernel_sum_us / 1000:.3f} ms + overhead "
               f"{est.overhead_us / 1000:.3f} ms [{est.overhead_source}]")
    click.echo(f"context  {est.context_source} [working set {est.footprint_mb:.0f} MB, gates: private cache "
               f"{est.private_gate:.2f}, last-level cache {est.cache_gate:.2f}]")
    click.echo("sources  " + ", ".join(f"{k}: {v}" for k, v in sorted(est.sources.items())))
    ks = sorted(est.kernels, key=lambda k: -k.latency_us)
    if top:
        ks = ks[:top]
    click.echo(f"\n{'latency_us':>11} {'share':>6}  {'source':24s} {'kind':12s} {'prec':5s} kernel (nodes)")
    for k in ks:
        nodes = ",".join(k.nodes[:4]) + ("..." if len(k.nodes) > 4 else "")
        click.echo(f"{k.latency_us:11.1f} {100 * k.share:5.1f}%  {k.source:24s} {k.kind:12s} {k.precision:5s} "
                   f"{k.name} ({nodes})")
    if est.uncovered:
        click.echo(f"\nuncovered ({len(est.uncovered)}, not in the total):")
        for u in est.uncovered[:50]:
            click.echo(f"  {u.node} [{u.op_type}]: {u.reason}")


def _host_measurable(target_name):
    """The target to measure on this host (default: this host's own); an error when this host cannot run it."""
    from .targets import get_target, host_target

    t = get_target(target_name) if target_name is not None else host_target()
    ok, why = t.host_supported()
    if not ok:
        raise LatencyError(f"cannot measure {t.name} on this host: {why}")
    return t


def _run_validation(model, t, profile_path, shapes, batch, core, phases, quiet, trip_counts=None):
    """profilers.validate under a progress bar, pinned to ``core``."""
    from profilers.measure import pin_to_core
    from profilers.validate import ValidateProtocol, validate as run

    from .progress import Bar, wanted

    if phases < 1:
        raise LatencyError(f"--phases must be at least 1, got {phases}")
    pin_to_core(core)
    proto = ValidateProtocol(phases=phases, rounds=2 * phases, max_phases=2 * phases)
    with Bar(proto.rounds + proto.kernel_repeats, "validate", enabled=wanted(quiet)) as bar:
        return run(model, t, profile=profile_path, shapes=_parse_shapes(shapes) or None, batch=batch, protocol=proto,
                   core=core, progress=lambda done, total, note: bar.update(done, note=note, total=total),
                   trip_counts=_parse_trip_counts(trip_counts or ()) or None)


@main.command("validate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", "target_name", default=None, help="a target this host runs (default: this host's)")
@click.option("--profile", "profile_path", default=None, type=click.Path(dir_okay=False),
              help="profiling database to estimate from (default: the target's)")
@click.option("--shape", "shapes", multiple=True, help="NAME=1x3x224x224 for inputs with dynamic dims")
@click.option("--batch", type=int, default=None, help="value for a dynamic leading (batch) dim")
@click.option("--core", type=int, default=0, show_default=True, callback=_core_option,
              help="core to pin the measurements to")
@click.option("--phases", type=int, default=3, show_default=True,
              help="fresh-session phases of the end-to-end run (2 rounds each; up to twice as many when unconfirmed)")
@click.option("--top", default=15, show_default=True, type=click.IntRange(min=0), help="kernels to list (0: all)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--precision", default=None,
              help="GPU targets: fp32 | fp16 | int8 (TensorRT's builder precision; fp32 | fp16 on the CUDA EP); "
                   "default: int8 for a QDQ model on TensorRT, else fp32")
@click.option("--trip-count", "trip_counts", multiple=True,
              help="NAME=N: iterations of Loop node NAME when the graph does not fix them (repeatable); a count "
                   "that is a graph input is fed N in the measured run")
def validate_cmd(model, target_name, profile_path, shapes, batch, core, phases, top, as_json, precision, trip_counts):
    """Measure a model on this host, end to end and per kernel, beside its estimate (a GPU target: end to end
    through onnxruntime-gpu's TensorRT or CUDA execution provider)."""
    from profilers.validate import render

    t = _host_measurable(target_name)
    if t.device == "gpu":  # whole model through onnxruntime-gpu (profilers/gpu.py); never CPU numbers
        from profilers.gpu import render_validation, validate_gpu

        res = validate_gpu(model, t, precision, shapes=_parse_shapes(shapes) or None, batch=batch, phases=phases,
                           profile=profile_path)
        if as_json:
            click.echo(json.dumps(res, indent=1))
            return
        for w in res["warnings"]:
            click.echo(f"warning: {w}", err=True)
        click.echo("\n".join(render_validation(res)))
        return
    if precision:
        raise LatencyError(f"--precision goes with GPU targets; {t.name} is measured as the model is stored "
                           "(quantize the model with onnxruntime.quantization to measure int8)")
    res = _run_validation(model, t, profile_path, shapes, batch, core, phases, as_json, trip_counts)
    if as_json:
        click.echo(json.dumps(res, indent=1))
        return
    for w in res["warnings"]:
        click.echo(f"warning: {w}", err=True)
    click.echo("\n".join(render(res, top)))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", "target_names", multiple=True,
              help="repeatable; the first gets the breakdown, roofline and profile plots (default: this host's); "
                   "with one target, every other target that has a profile or a spec sheet is compared")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder for report.html and the PNGs")
@click.option("--profile", "profile_path", default=None, type=click.Path(dir_okay=False),
              help="profiling database for the first target (default: its own)")
@click.option("--validate", "with_validation", is_flag=True, help="also measure the model on this host (first target)")
@click.option("--shape", "shapes", multiple=True, help="NAME=1x3x224x224 for inputs with dynamic dims")
@click.option("--batch", type=int, default=None, help="value for a dynamic leading (batch) dim")
@click.option("--core", type=int, default=0, show_default=True, callback=_core_option,
              help="core to pin --validate's measurements to")
@click.option("--top", default=15, show_default=True, type=click.IntRange(min=0),
              help="kernels in the breakdown (0: all)")
@click.option("--trip-count", "trip_counts", multiple=True,
              help="NAME=N: iterations of Loop/Scan node NAME when the graph does not fix them (repeatable)")
def report(model, target_names, out, profile_path, with_validation, shapes, batch, core, top, trip_counts):
    """Figures and one self-contained HTML page about a model's estimate (and, with --validate, its measurement)."""
    from pathlib import Path

    from .estimator import Estimator
    from .graph import load_graph
    from .report import write_report
    from .targets import default_target, get_target, targets as all_targets

    names = list(dict.fromkeys(target_names)) or [default_target()[0].name]
    for n in names:
        get_target(n)  # an unknown name fails before anything runs
    if not with_validation and click.get_current_context().get_parameter_source("core").name != "DEFAULT":
        raise LatencyError("--core pins --validate's measurements; without --validate nothing is measured")
    graph = load_graph(model, shapes=_parse_shapes(shapes) or None, batch=batch,
                       trip_counts=_parse_trip_counts(trip_counts) or None)
    compare = names if len(names) > 1 else names + [n for n, t in all_targets().items()
                                                    if n != names[0] and t.device != "fake"]
    ests, derived, skipped = {}, {}, {}
    for n in compare:
        try:
            ests[n] = Estimator(n, profile=profile_path if n == names[0] else None).estimate(graph)
        except LatencyError as e:
            if n == names[0] or n in target_names:
                raise
            skipped[n] = str(e)
            continue
        t = get_target(n)
        if not ests[n].profile and t.spec:
            derived[n] = f"priced from {t.spec.get('source', 'a spec sheet')}, nothing measured"
    validation = None
    if with_validation:
        t = _host_measurable(names[0])
        validation = _run_validation(model, t, profile_path, shapes, batch, core, 3, False, trip_counts)
    from .progress import Bar, wanted

    with Bar(5, "report", enabled=wanted()) as bar:
        r = write_report(Path(model).stem, ests, out, validation=validation, derived=derived, skipped=skipped,
                         top=top or None, progress=lambda done, total, what: bar.update(done, total=total, note=what))
    for n, why in skipped.items():
        click.echo(f"note: {n} not compared: {why}", err=True)
    click.echo(f"wrote {r['html']} ({len(r['figures'])} figures embedded; PNGs beside it)")


@db.command("plot")
@click.option("--db", "path", required=True, type=click.Path(dir_okay=False))
@click.option("--target", "target_name", default=None, help="default: the database's only target")
@click.option("--kind", required=True, help="op kind for the latency and precision plots (see `latency ops`)")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder for the PNGs")
def plot(path, target_name, kind, out):
    """Plot a profile: latency vs work and precision ratios for one kind, sparsity curves of every kind."""
    from .report import profile_plots

    for f in profile_plots(path, out, kind, target_name):
        click.echo(f"wrote {f.path}")


@main.command("whatif")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", "target_name", default=None, help="default: the profile matching this host")
@click.option("--profile", "profile_path", default=None, type=click.Path(dir_okay=False))
@click.option("--shape", "shapes", multiple=True, help="NAME=1x3x224x224 for inputs with dynamic dims")
@click.option("--batch", type=int, default=None, help="value for a dynamic leading (batch) dim")
@click.option("--precision", default=None, help="int8 (quantize_static, QDQ) | int8-dynamic (quantize_dynamic) | "
              "fp16 (convert_float_to_float16, --fp32-nodes as node_block_list) | int4-weight (MatMulNBitsQuantizer) "
              "| fp32")
@click.option("--fp32-nodes", multiple=True, help="comma-separated nodes kept fp32 (nodes_to_exclude); repeatable")
@click.option("--sparsity", default=None, help="fraction of zero weights in [0, 1), or 2:4, for every weighted node")
@click.option("--prune", default=None, help="fraction of output channels pruned: 0.25 or 0.5")
@click.option("--prune-nodes", multiple=True, help="comma-separated nodes --prune applies to (default: all it can); "
              "repeatable")
@click.option("--sensitivity", is_flag=True, help="per node: the change of the total under each alternative alone")
@click.option("--csv", "csv_path", default=None, type=click.Path(dir_okay=False), help="write --sensitivity here")
@click.option("--verify", is_flag=True, help="also fuse and price the rewritten model whole (the reference)")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=0), help="rows to list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def whatif_cmd(model, target_name, profile_path, shapes, batch, precision, fp32_nodes, sparsity, prune, prune_nodes,
               sensitivity, csv_path, verify, top, as_json):
    """Price compression choices (int8, int8-dynamic, fp16, int4-weight, sparsity, channel pruning) before
    compressing anything."""
    from .estimator import Estimator
    from .targets import choose_default
    from .whatif.present import choice_from_flags, sensitivity_text, text

    if target_name is None:
        t, info, _ = choose_default()
        target_name, profile_path = t.name, profile_path or (info.path if info else None)
    # an option that would do nothing is refused, never ignored: an empty value included
    for flag, given in (("--fp32-nodes", fp32_nodes), ("--prune-nodes", prune_nodes)):
        names = [n.strip() for v in given for n in v.split(",") if n.strip()]
        if given and not names:
            raise click.UsageError(f"{flag} names no node (an empty list); give node names, comma-separated")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise click.UsageError(f"{flag} names {', '.join(twice)} more than once; name each node once")
    for flag, given in (("--precision", precision), ("--sparsity", sparsity), ("--prune", prune)):
        if given is not None and not given.strip():
            raise click.UsageError(f"{flag} is empty; give a value or leave the option out")
    fp32_nodes = ",".join(fp32_nodes) or None
    prune_nodes = ",".join(prune_nodes) or None
    if fp32_nodes and precision in (None, "", "fp32"):
        raise click.UsageError("--fp32-nodes keeps nodes fp32 under a reduced --precision (int8, int8-dynamic, fp16, "
                               "int4-weight); give one")
    if prune_nodes and prune in (None, ""):
        raise click.UsageError("--prune-nodes names where --prune applies; give --prune too")
    if csv_path and not sensitivity:
        raise click.UsageError("--csv writes the --sensitivity table; give --sensitivity too")
    if sensitivity:
        extra = [f for f, v in (("--precision", precision), ("--fp32-nodes", fp32_nodes), ("--sparsity", sparsity),
                                ("--prune", prune), ("--verify", verify)) if v not in (None, "", False)]
        if extra:
            raise click.UsageError(f"--sensitivity prices every alternative of every node alone; {', '.join(extra)} "
                                   "would do nothing with it")
    choice = choice_from_flags(precision, fp32_nodes, sparsity, prune, prune_nodes)  # bad flags fail before loading
    plan = Estimator(target_name, profile=profile_path).plan(model, shapes=_parse_shapes(shapes) or None, batch=batch)
    if sensitivity:
        df = plan.sensitivity()
        if csv_path:
            df.to_csv(csv_path, index=False)
        if as_json:
            click.echo(json.dumps({"baseline_ms": plan.baseline_ms, "target": target_name, "notes": df.attrs["notes"],
                                   "rows": json.loads(df.to_json(orient="records"))}, indent=1))
        else:
            click.echo(sensitivity_text(df, top))
        return
    result = plan.evaluate(choice)
    reference = plan.verify(choice) if verify else None
    if as_json:
        d = result.to_dict()
        if reference is not None:
            d["verified_ms"] = reference.total_ms
        click.echo(json.dumps(d, indent=1, default=str))
    else:
        click.echo(text(result, top))
        if reference is not None:
            click.echo(f"  verified: {reference.total_ms:.3f} ms when the rewritten model is fused and priced whole")


if __name__ == "__main__":
    main()
