"""Section 2: cold start of each Lambda module in a fresh interpreter, against the floor.

Each figure is measured inside a new `python -c` (import + settings + schema compile, what the
Lambda init phase runs before the first event), median of several runs taken in turn so that
the shared machine's load hits every target alike. The floor is what any thin Powertools
handler on this stack must import: boto3, Powertools (Logger, Tracer, Metrics, event_handler)
and lxml, with the Logger/Tracer/Metrics/resolver objects the handlers build at import.

`-X importtime` then names what each module imports beyond the floor, by package.
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from bench.core import ROOT, Context, Row
from bench.timing import ms

TARGET_RATIO = 1.3

FLOOR = """
import boto3
from lxml import etree
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
Logger(); Tracer(); Metrics(namespace="NfsePlatform"); APIGatewayRestResolver()
"""

EMIT = """
import functions.emit.app
from nfse_core.config import ApiSettings
from nfse_core.xml.schema import abrasf_schema
ApiSettings.from_env()
abrasf_schema()
"""

GET = """
import functions.get.app
from nfse_core.config import QuerySettings
QuerySettings.from_env()
"""

PROCESSOR = """
import functions.processor.app
"""

# What template.yaml gives the functions (Globals + each function's variables), dummy values.
LAMBDA_ENV: Mapping[str, str] = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "nfse-platform",
    "POWERTOOLS_METRICS_NAMESPACE": "NfsePlatform",
    "POWERTOOLS_LOGGER_LOG_EVENT": "false",
    "POWERTOOLS_LOGGER_SAMPLE_RATE": "0",
    "LOG_LEVEL": "INFO",
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
    "INVOICES_TABLE": "bench-invoices",
    "IDEMPOTENCY_TABLE": "bench-idempotency",
    "TENANTS_TABLE": "bench-tenants",
    "RPS_COUNTERS_TABLE": "bench-counters",
    "DOCS_BUCKET": "bench-docs",
    "DOCS_KMS_KEY_ID": "",
    "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:000000000000:stateMachine:bench",
    "RPS_SERIE": "1",
    "DLQ_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/bench-dlq",
    "DB_CLUSTER_ARN": "arn:aws:rds:us-east-1:000000000000:cluster:bench",
    "DB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:bench",
    "DB_NAME": "nfse",
    "CERT_SECRET_PREFIX": "nfse/certificates",
    "PROVIDER_ENVIRONMENT": "homologacao",
}


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    code: str
    no_pyc: bool = False


def targets() -> list[Target]:
    found = [Target("floor", FLOOR), Target("EmitFn", EMIT), Target("GetFn", GET)]
    if (ROOT / "functions" / "processor" / "app.py").is_file():
        found.append(Target("ProcessorFn", PROCESSOR))
    return found


def _env(no_pyc: bool, pycache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(LAMBDA_ENV)
    env["PYTHONPATH"] = str(ROOT)
    if no_pyc:
        # An empty cache directory and no writes: every module is compiled from source, as a
        # layer without bytecode would be on Lambda's read-only file system.
        env["PYTHONPYCACHEPREFIX"] = pycache
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def measure_once(target: Target, pycache: str = "") -> tuple[float, float]:
    """(wall, CPU) seconds from the first import to the end of `target.code`, new interpreter.

    CPU time (user + system of the process) is the figure compared: imports are CPU-bound, and
    on a shared machine the wall clock mostly measures the neighbours.
    """
    code = "import time\n_t0 = time.perf_counter()\n_c0 = time.process_time()\n" + target.code
    code += "\nprint(time.perf_counter() - _t0, time.process_time() - _c0)\n"
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(target.no_pyc, pycache),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def import_self_times(code: str) -> dict[str, int]:
    """Module -> self import time (µs) from `python -X importtime`."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        env=_env(False, ""),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    times: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line.split(":", 1)[1].split("|")
        times[name.strip()] = int(self_us)
    return times


def beyond_floor(code: str, floor: Mapping[str, int], top: int = 5) -> list[tuple[str, float]]:
    """Top-level packages the module imports that the floor does not, by self time (ms)."""
    return by_package(import_self_times(code), floor, top)


def by_package(
    times: Mapping[str, int], floor: Mapping[str, int], top: int | None = 5
) -> list[tuple[str, float]]:
    """Modules of `times` the floor does not import, summed by top-level package (ms)."""
    extra: Counter[str] = Counter()
    for name, self_us in times.items():
        if name not in floor:
            extra[name.split(".")[0]] += self_us
    return [(package, self_us / 1000) for package, self_us in extra.most_common(top)]


def compile_like_the_layer() -> None:
    """Bytecode for our own packages, as the layer build writes it (Makefile, CoreLayer).

    Site-packages got theirs from pip; without this, a checkout run with
    PYTHONDONTWRITEBYTECODE (as on these machines) would compile nfse_core at every start and
    charge the functions for a cost the deployed layer does not have. The functions' own
    handler modules are left as sam build ships them: source only.
    """
    compileall.compile_dir(ROOT / "nfse_core", quiet=1)


def rows(ctx: Context) -> list[Row]:
    runs = ctx.iterations(7, 1)
    compile_like_the_layer()
    chosen = targets()
    with_no_pyc = [*chosen, Target("EmitFn without .pyc", EMIT, no_pyc=True)]
    if not ctx.quick:
        with_no_pyc.append(Target("floor without .pyc", FLOOR, no_pyc=True))
    samples: dict[str, list[float]] = {t.name: [] for t in with_no_pyc}
    walls: dict[str, list[float]] = {t.name: [] for t in with_no_pyc}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        for _ in range(runs):
            for target in with_no_pyc:
                wall, cpu = measure_once(target, pycache)
                samples[target.name].append(cpu)
                walls[target.name].append(wall)
    median = {name: statistics.median(values) for name, values in samples.items()}
    wall_median = {name: statistics.median(values) for name, values in walls.items()}
    floor = median["floor"]
    ctx.measured["cold_start_floor_seconds"] = floor
    ctx.measured["cold_start_emit_seconds"] = median["EmitFn"]

    floor_imports = import_self_times(FLOOR)
    emit_imports = import_self_times(EMIT) if not ctx.quick else {}
    out = [
        Row(
            "floor: boto3 + Powertools + lxml",
            ms(floor),
            note=f"CPU time, median of {runs}; wall {ms(wall_median['floor'])}",
        )
    ]
    beyond: dict[str, list[tuple[str, float]]] = {}
    for target in chosen[1:]:
        ratio = median[target.name] / floor
        if ctx.quick:
            extra = []
        elif target.code == EMIT:
            extra = by_package(emit_imports, floor_imports)
        else:
            extra = beyond_floor(target.code, floor_imports)
        beyond[target.name] = extra
        named = ", ".join(f"{pkg} {t:.0f} ms" for pkg, t in extra)
        out.append(
            Row(
                f"{target.name} (import + settings{' + XSD' if 'abrasf' in target.code else ''})",
                f"{ms(median[target.name])} ({ratio:.2f}x floor)",
                f"<= {TARGET_RATIO}x floor",
                ratio <= TARGET_RATIO,
                f"CPU time, median of {runs}; wall {ms(wall_median[target.name])}"
                + (f"; beyond the floor: {named}" if named else ""),
            )
        )
        ctx.measured[f"cold_start_ratio_{target.name}"] = ratio
    if "ProcessorFn" not in median:
        out.append(
            Row("ProcessorFn", "no functions/processor/app.py yet", note="measured once it lands")
        )
    no_pyc = median["EmitFn without .pyc"]
    note = "what a layer without bytecode would cost: every module compiled at every cold start"
    if "floor without .pyc" in median:
        note += f"; floor without .pyc {ms(median['floor without .pyc'])}"
    out.append(Row("EmitFn without .pyc", f"{ms(no_pyc)} ({no_pyc / floor:.2f}x floor)", note=note))
    listed = "\n".join(
        f"- {name}: " + ", ".join(f"{pkg} {t:.0f} ms" for pkg, t in extra)
        for name, extra in beyond.items()
        if extra
    )
    ctx.notes["cold_start"] = (
        "Imported beyond the floor (self time, `-X importtime`, one run):\n\n"
        + (listed or "- (not measured in quick mode)")
        + "\n\n"
        + findings(
            median,
            emit_imports=emit_imports,
            floor_imports=floor_imports,
            xsd_compile=ctx.measured.get("xsd_compile_lxml_seconds"),
        )
    )
    return out


# What "pydantic itself" is in EmitFn's imports: the library and the packages it pulls in.
PYDANTIC_PACKAGES = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection")
# The module whose import builds the request models (pydantic builds a model's validator when
# its class statement runs, so the building is that module's self time).
REQUEST_MODELS = "nfse_core.domain.models"


def findings(
    median: Mapping[str, float],
    *,
    emit_imports: Mapping[str, int],
    floor_imports: Mapping[str, int],
    xsd_compile: float | None = None,
) -> str:
    """What is slow, from this run: `median` CPU seconds by target, the `-X importtime` self
    times (µs) of EmitFn and of the floor, the XSD compile time of section 1 if it ran."""
    floor = median["floor"]
    lines = ["**What is slow, and whether a warm invocation needs it.**", ""]
    if "GetFn" in median:
        lines.append(
            "- GetFn imports no pydantic: settings are frozen dataclasses (`nfse_core.config`), "
            "the RPS identity is a plain value object (`nfse_core.domain.rps`), and the read side "
            "(`nfse_core.services.queries`) imports nothing of the emit side. It sits at "
            f"{median['GetFn'] / floor:.2f}x the floor."
        )
    packages = dict(by_package(emit_imports, floor_imports, top=None))
    if packages:
        pydantic_ms = sum(packages.get(name, 0.0) for name in PYDANTIC_PACKAGES)
        models_ms = emit_imports.get(REQUEST_MODELS, 0) / 1000
        rest_ms = sum(packages.values()) - pydantic_ms - models_ms
        gap_ms = (median["EmitFn"] - floor) * 1e3
        xsd = f" ({xsd_compile * 1e3:.1f} ms in section 1)" if xsd_compile else ""
        lines.append(
            f"- EmitFn sits {gap_ms:.0f} ms of CPU above the floor. Of what it imports beyond "
            f"the floor (self time, one run), pydantic itself ({', '.join(PYDANTIC_PACKAGES)}) "
            f"is {pydantic_ms:.0f} ms, {pydantic_ms / (floor * 1e3):.2f}x of the floor on its "
            f"own, and building the request models (`{REQUEST_MODELS}`) another "
            f"{models_ms:.0f} ms. A warm POST needs both: request validation is pydantic, as the "
            "project's conventions choose, so this gap stays unless validation is rewritten "
            "without it. Everything else it imports (the XML builder, stores, Powertools "
            f"idempotency, the settings module) is {rest_ms:.0f} ms; reading the settings and "
            f"compiling the XSD{xsd} come after the imports."
        )
    lines += [
        "- pydantic looks for plugins in every installed package's entry points when the first "
        "model class is built (the more packages installed, the longer; the layer has fewer "
        "than this checkout): the template sets `PYDANTIC_DISABLE_PLUGINS=__all__` for every "
        "function and the worker, as this bench does.",
        "- ProcessorFn additionally imports cryptography and signxml (signing), requests (the "
        "SOAP client) and the pydantic provider registry. A run with messages in the DLQ needs "
        "all of them, and it is not on a client's request path (manual or scheduled).",
        "- The layer ships bytecode (`compileall --invalidation-mode unchecked-hash` in the "
        "CoreLayer build; this bench compiles nfse_core the same way before measuring): without "
        'it, every cold start would compile every module first, the "without .pyc" row'
        + (
            f" ({median['EmitFn without .pyc'] / median['EmitFn']:.1f}x EmitFn's time)."
            if "EmitFn without .pyc" in median
            else "."
        ),
        "- Python's cyclic garbage collector runs full collections over the objects the imports "
        "create, in the floor and in the functions alike (not measured apart here); it is left "
        "at its defaults.",
    ]
    return "\n".join(lines) + "\n"
