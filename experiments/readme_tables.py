"""README and model-card tables rendered from experiments/results/*.json, so the documents never
drift from them.

    python -m experiments.readme_tables          # print the tables
    python -m experiments.readme_tables --write  # replace the blocks between the documents' markers

A test (tests/test_readme_tables.py) fails when a document's blocks differ from the files.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any

from ecgbio.provenance import REPO

RESULTS = REPO / "experiments" / "results"
README = REPO / "README.md"
MODEL_CARD = REPO / "docs" / "model-card.md"
RESULTS_DOC = REPO / "docs" / "results.md"
#: The documents whose ``<!-- results:NAME -->`` blocks are rendered from the results files.
DOCUMENTS = (README, MODEL_CARD, RESULTS_DOC)


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def rpeaks_table() -> str:
    data = _load("rpeaks-mitdb")
    if data is None:
        return "_no results yet: run `python experiments/rpeaks_mitdb.py`_"
    rows = [
        "| detector | Se 150 ms | +P 150 ms | Se 50 ms | +P 50 ms | Se EC57 | +P EC57 "
        "| s / 30-min record |",
        "|---|---|---|---|---|---|---|---|",
    ]
    totals = data["totals"]
    ranked = sorted(totals.items(), key=lambda kv: -(kv[1]["refined"]["50ms"]["f1"] or 0))
    for name, t in ranked:
        if t.get("failures") and len(t["failures"]) == t["records"]:
            continue
        r = t["refined"]
        ec57 = r.get("150ms_ec57", {})
        rows.append(
            f"| {name} | {_pct(r['150ms']['sensitivity'])} | {_pct(r['150ms']['ppv'])} | "
            f"{_pct(r['50ms']['sensitivity'])} | {_pct(r['50ms']['ppv'])} | "
            f"{_pct(ec57.get('sensitivity'))} | {_pct(ec57.get('ppv'))} | "
            f"{t['s_per_record']:.2f} |"
        )
    beats = next(iter(totals.values()))["reference_beats"]
    rows.append("")
    rows.append(
        f"All 48 records, channel 0, {beats:,} reference beats, after ecgbio's peak "
        f"refinement. The first four columns score whole records; EC57 scores at 150 ms "
        f"without the first 5 minutes (learning period) and the ventricular flutter episodes "
        f"of record 207, as the standard does; command: `{data['command']}` ({data['hardware']['cpu']}, "
        f"{data['hardware']['cores']} cores, {data['wall_time_s']:.0f} s)."
    )
    return "\n".join(rows)


def protocols_table() -> str:
    rows = ["| protocol | data | persons / classes | figures | command |", "|---|---|---|---|---|"]
    found = False
    for path in sorted(RESULTS.glob("ptbxl-*.json")):
        d = json.loads(path.read_text())
        found = True
        if d["protocol"] == "seed":
            figs = (
                f"test acc **{d['test_accuracy']:.3f}** (loss {d['test_loss']:.3f}), "
                f"train acc {d['accuracy']:.3f} (loss {d['loss']:.3f}), val acc "
                f"{d['val_accuracy']:.3f} (loss {d['val_loss']:.3f}), {d['epochs']} epochs"
            )
            who = f"{d['classes']} classes (records)"
        elif d["protocol"] == "cross-session":
            figs = (
                f"record rank-1 **{d['rank1']:.3f}**, rank-5 {d['rank5']:.3f}, beat rank-1 "
                f"{d['beat_rank1']:.3f}"
            )
            who = f"{d['persons']} persons, {d['probes']} probes"
        else:
            figs = (
                f"rank-1 **{d['rank1']:.3f}**, rank-5 {d['rank5']:.3f}, EER {d['eer']:.3f}, "
                f"AUC {d['auc']:.3f}, TAR@FAR1% {d['tar@far=0.01']:.3f}, "
                f"TAR@FAR0.1% {d['tar@far=0.001']:.3f}"
            )
            who = f"{d['persons']} persons, {d['probes']} probes"
        rate = d["beat_config"]["rate"]
        leads = ",".join(d["beat_config"]["leads"])
        rows.append(
            f"| {d['protocol']} | PTB-XL subset, {leads}, {rate} Hz | {who} | {figs} | "
            f"`{d['command']}` |"
        )
    return "\n".join(rows) if found else "_no results yet_"


def _ci(d: dict[str, Any]) -> str:
    ci = d.get("eer_ci")
    return f" ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})" if ci else ""


def _spread(d: dict[str, Any], key: str, scale: float = 1.0, digits: int = 3) -> str:
    return f" ± {scale * d[key + '_std']:.{digits}f}" if f"{key}_std" in d else ""


def _fold_sizes(d: dict[str, Any]) -> str:
    sizes = sorted({f["persons"] for f in d.get("folds", [])}) or [0]
    return f"{sizes[0]}-{sizes[-1]}" if len(sizes) > 1 else str(sizes[0])


def ecgid_table() -> str:
    """ECG-ID: the default model unseen, fine-tuned on other folds' persons, and closed-set."""
    rows = [
        "| setting | persons / probes | rank-1 | rank-5 | EER % (95 % CI) | TAR@FAR 1 % | "
        "TAR@FAR 0.1 % | other-day probes: rank-1 / EER % | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    found = []
    for mode in ("unseen", "finetuned", "closed"):
        d = _load(f"ecgid-{mode}")
        if d is None:
            continue
        found.append((mode, d))
        other = d.get("other_day")
        other_text = (
            f"{other['rank1']:.3f} / {100 * other['eer']:.1f} ({other['probes']} probes)"
            if other
            else "–"
        )
        label = {
            "unseen": "default model as shipped (never saw ECG-ID)",
            "finetuned": f"fine-tuned on the other folds' persons ({len(d.get('folds', []))} folds,"
            f" mean ± SD; each fold's gallery holds its {_fold_sizes(d)} persons only, so rank-k "
            "is over a smaller gallery than the 89 of the other rows)",
            "closed": "closed set: trained on all records but each person's last",
        }[mode]
        if mode == "finetuned" and "not_finetuned" in d:
            base = d["not_finetuned"]
            label += (
                f"; the model as shipped on the same folds: rank-1 {base['rank1']:.3f}, "
                f"EER {100 * base['eer']:.1f} %"
            )
        if mode == "closed" and "softmax" in d:
            label += f"; softmax record accuracy {d['softmax']['record_accuracy']:.3f}"
        rows.append(
            f"| {label} | {d['persons']} / {d['probes']} | **{d['rank1']:.3f}**{_spread(d, 'rank1')} | "
            f"{d['rank5']:.3f} | {100 * d['eer']:.1f}{_spread(d, 'eer', 100, 1)}{_ci(d)} | "
            f"{d['tar@far=0.01']:.3f} | {d['tar@far=0.001']:.3f} | {other_text} | "
            f"`{d['command']}` |"
        )
    if not found:
        return "_no results yet: run `python -m experiments.ecgid --mode unseen`_"
    unseen = dict(found).get("unseen")
    if unseen and unseen.get("by_enrol_beats"):
        by_k = unseen["by_enrol_beats"]
        cells = ", ".join(
            f"{k}: {v['rank1']:.3f} / {100 * v['eer']:.1f} %" for k, v in by_k.items()
        )
        rows += ["", f"Default model, rank-1 / EER against the beats enrolled from rec_1: {cells}."]
    return "\n".join(rows)


def ecgid_enrol_records_table() -> str:
    """ECG-ID enrolled from 1, 2, 3 records: the same persons and probes, then all who can be."""
    d = _load("ecgid-enrol-records")
    if d is None:
        return "_no results yet: run `python -m experiments.ecgid --mode enrol-records`_"
    same = d["same_persons"]
    rows = [
        "| persons, probes | enrolled records | templates | persons / probes | "
        "enrolled on 2+ days | rank-1 | rank-5 | EER % (95 % CI) | TAR@FAR 1 % | "
        "other-day probes: rank-1 / EER % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    top = same["min_records"] - 1
    label = {
        "same": f"same for every n: >= {top + 1} records, probes after the first {top}",
        "all": "all with > n records, probes after the first n",
    }
    for setting in ("same", "all"):
        for r in d["rows"]:
            if r["setting"] != setting:
                continue
            n, mode = r["enrol_records"], r["template_mode"]
            if n == 1 and mode != "each":
                continue  # one template per person: each = mean
            other = r.get("other_day")
            other_text = (
                f"{other['rank1']:.3f} / {100 * other['eer']:.1f} ({other['probes']} probes)"
                if other
                else "–"
            )
            rows.append(
                f"| {label[setting]} | {n} | {'one (each = mean)' if n == 1 else mode} | "
                f"{r['persons']} / {r['probes']} | {r['enrolled_over_several_days']} | "
                f"**{r['rank1']:.3f}** | {r['rank5']:.3f} | {100 * r['eer']:.1f}{_ci(r)} | "
                f"{r['tar@far=0.01']:.3f} | {other_text} |"
            )
    diffs = "; ".join(
        f"{p['template_mode']}, {p['enrol_records']} records minus {p['against']}: rank-1 "
        f"{p['rank1_diff']:+.3f} ({p['rank1_diff_ci'][0]:+.3f} to {p['rank1_diff_ci'][1]:+.3f}), "
        f"EER {100 * p['eer_diff']:+.1f} points ({100 * p['eer_diff_ci'][0]:+.1f} to "
        f"{100 * p['eer_diff_ci'][1]:+.1f})"
        for p in d["paired"]
    )
    hw = d["hardware"]
    rows += [
        "",
        f"Paired differences on the same {same['persons']} persons and {same['probes']} probes, "
        f"with 95 % intervals from one resampling of persons shared by both settings: {diffs}. "
        "Records are ordered by date, then record number; `each` keeps one template per enrolled "
        "record (a person scores their best; the gallery's default), `mean` one mean template "
        "per person; one score per probe and person, raw cosine. Other-day probes were "
        "recorded on none of the enrolled records' days (in the same-persons rows, none of the "
        f"first {top} records' days, so they too are the same for every n). "
        f"Command: `{d['command']}` ({hw['cpu']}, {hw['cores']} cores, "
        f"{d['wall_time_s']:.0f} s; commit {(d.get('git_commit') or 'unknown')[:7]}).",
    ]
    return "\n".join(rows)


def enrol_summary() -> str:
    """For the README: what enrolling a person from more records buys, on ECG-ID."""
    d = _load("ecgid-enrol-records")
    if d is None:
        return "_no results yet: run `python -m experiments.ecgid --mode enrol-records`_"
    gain = next(p for p in d["paired"] if p["template_mode"] == "mean" and p["enrol_records"] == 3)
    low, high = gain["rank1_diff_ci"]
    return (
        f"Enrolling a person from more records (`--append`) is your own lever: on ECG-ID, three "
        f"records instead of one raise rank-1 by {gain['rank1_diff']:.3f} ({low:+.3f} to "
        f"{high:+.3f}; `{d['command']}`, every setting in [docs/results.md](docs/results.md))."
    )


def default_model_table() -> str:
    """The shipped model's card: what it was trained on, how it was selected, what it cost."""
    d = _load("default-model")
    if d is None:
        return "_no results yet: run `python -m experiments.train_default --install`_"
    split, val, cfg, model = d["split"], d["validation"], d["train_config"], d["model_config"]
    hw = d["hardware"]
    rows = [
        "| | |",
        "|---|---|",
        f"| training data | {d['data']}: {split['train_identities']:,} identities, "
        f"{split['train_records']:,} records, {split['train_beats']:,} training beats |",
        f"| selection | {split['val_persons']} persons with several records (PTB-XL patients and "
        f"MIT-BIH's 201/202), never trained on; best epoch {d['best_epoch']} of {d['epochs']} "
        f"by rank-1 minus EER{' over every (earlier, later) record pair' if 'pairs_rank1' in val else ''} |",
        f"| validation, enrolled from the earliest record | rank-1 {val['rank1']:.3f}, rank-5 "
        f"{val['rank5']:.3f}, EER {100 * val['eer']:.1f} %, AUC {val['auc']:.3f} |",
    ]
    if "pairs_rank1" in val:
        rows.append(
            f"| validation, every (earlier, later) record pair | rank-1 {_with_ci(val, 'pairs_rank1')}, "
            f"EER {_with_ci(val, 'pairs_eer', pct=True)} % ({val['pairs_trials']} pairs; 95 % intervals "
            f"over persons) |"
        )
    if d.get("versus_shipped"):
        rows.append(
            f"| against the model it replaced, same pairs | {_versus(d['versus_shipped'])} |"
        )
    rows += [
        f"| network | ResNet1d {'/'.join(str(w) for w in model['widths'])} channels, blocks "
        f"{','.join(str(b) for b in model['blocks'])}, {model['embedding_dim']}-d embedding, input "
        f"{'millivolts' if model['input_norm'] == 'none' else 'z-scored beats'} |",
        f"| training | {cfg['metric_loss']} + softmax, {cfg['batch_size']} beats a batch "
        f"({cfg['m_per_class']} per identity), AdamW lr {cfg['lr']:g}, gain "
        f"+-{100 * cfg.get('augment_gain', 0.2):.0f} %, time stretch "
        f"+-{100 * cfg['augment_stretch']:.0f} %, shift +-{1000 * cfg['augment_shift_s']:.0f} ms, "
        f"lead axis +-{cfg.get('augment_axis_deg', 0):g} deg, "
        f"{d['train_beats_per_s']:.0f} beats/s |",
        f"| wall time | {d['wall_time_s'] / 60:.0f} min on {hw['cpu']}, {hw['cores']} cores "
        f"({cfg['threads'] or 'default'} torch thread(s), beside other jobs) |",
        f"| command | `{d['command']}` at commit {(d.get('git_commit') or 'unknown')[:7]} |",
    ]
    return "\n".join(rows)


def default_summary_table() -> str:
    """The README's two lines on the shipped model: validation and ECG-ID, with commands."""
    d, e = _load("default-model"), _load("ecgid-unseen")
    if d is None or e is None:
        return "_no results yet: run `python -m experiments.train_default --install`_"
    val, fig = d["validation"], e
    pairs = (
        f"; every record pair: {val['pairs_rank1']:.3f} / {100 * val['pairs_eer']:.1f} %"
        if "pairs_rank1" in val
        else ""
    )
    return "\n".join(
        [
            "| measured on | rank-1 / EER | command |",
            "|---|---|---|",
            f"| {d['split']['val_persons']} validation persons (PTB-XL, MIT-BIH), enrolled from "
            f"their earliest record | {val['rank1']:.3f} / {100 * val['eer']:.1f} %{pairs} | "
            f"`{d['command']}` |",
            f"| ECG-ID, never seen ({fig['persons']} persons, {fig['probes']} probes) | "
            f"{fig['rank1']:.3f} / {100 * fig['eer']:.1f} % | `{e['command']}` |",
            *_speed_row(),
        ]
    )


def _speed_row() -> list[str]:
    """The README's line on speed: one 10 s record identified, warm, one thread."""
    path = REPO / "benchmarks" / "results" / "real_speed.json"
    if not path.exists():
        return []
    d = json.loads(path.read_text())
    ident = d["identify"]
    ms = next(iter(ident["probes"].values()))["ms"]["identify"]["median_ms"]
    return [
        f"| speed: identify one 10 s record against {ident['gallery_persons']} persons (model "
        f"loaded, 1 thread, {d['hardware']['cpu']}) | {ms:.1f} ms median | `{d['command']}` |"
    ]


def default_variants_table() -> str:
    """Every variant of the recipe, one row each, against the model shipped when it ran."""
    rows = [
        "| variant | what it changed | ran on | validation: rank-1 / EER % (earliest record) | "
        "every record pair: rank-1 / EER % | against the model shipped then, same persons | "
        "command |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("default-model-*.json")):
        variant = json.loads(path.read_text())
        v = variant["validation"]
        name = path.stem.removeprefix("default-model-")
        pairs = (
            f"{v['pairs_rank1']:.3f} / {100 * v['pairs_eer']:.1f}" if "pairs_rank1" in v else "–"
        )
        rows.append(
            f"| `{name}` | {_variant_options(variant)} | {_ran_on(variant)} | "
            f"{v['rank1']:.3f} / {100 * v['eer']:.1f} (epoch {variant['best_epoch']}) | {pairs} | "
            f"{_against_shipped(variant)} | `{variant['command']}` at "
            f"{(variant.get('git_commit') or 'unknown')[:7]}{_note(variant)} |"
        )
    return "\n".join(rows)


def default_levers_table() -> str:
    """Levers for session invariance measured without a finished variant row: what changes
    between a person's records, a linear session projection, CinC 2017 runs cut short."""
    rows = ["| lever | measured | command |", "|---|---|---|"]
    drift = _load("session-drift")
    if drift:
        aug, now = drift["implied_augmentation"], drift["current_default_augmentation"]
        rows.append(
            f"| what changes between one person's records (PTB-XL, {drift['patients']} patients, "
            f"90th percentile across sessions) | gain +-{aug['gain_pct']:.0f} %, QRS axis "
            f"+-{aug['axis_deg_qrs']:.0f} deg, time stretch +-{aug['stretch_pct_fitted']:.0f} %, "
            f"heart rate +-{aug['rr_pct']:.0f} %; noise no more than within a record (the recipe "
            f"draws gain +-{now['gain_pct']} %, stretch +-{now['stretch_pct']} %) | "
            f"`{drift['command']}` |"
        )
    projection = _load("session-projection")
    if projection:
        for name, figures in projection["methods"].items():
            if name not in ("nap-1", "nap-4", "wccn-0.1"):
                continue
            rows.append(
                f"| session projection `{name}` fitted on 4 folds of the multi-record persons, "
                f"scored on the 5th, against plain cosine on the same pairs | "
                f"{_versus(figures['versus_plain'])} | `{projection['command']}` |"
            )
    kfold = _load("default-sweep-kfold")
    for row in (kfold or {}).get("rows", []):
        common = row["at_common_epoch"]
        rows.append(
            f"| `{row['name']}`: the multi-record persons train too, five folds each validating "
            f"on the persons it left out ({row['ran_on']}) | each fold at its own best epoch, "
            f"pooled: {_versus(row['versus_shipped'])}; all folds at epoch {common['epoch']} "
            f"(median of {', '.join(map(str, common['selected_epochs']))}): rank-1 "
            f"{common['rank1_diff']:+.3f}, EER {100 * common['eer_diff']:+.1f} points (mean over "
            f"folds) | `{row['command'].split(' --fold ')[0]} --fold 0..4 ...` at "
            f"{(row.get('git_commit') or 'unknown')[:7]}, summarised by `python -m "
            f"experiments.default_sweep --from-runs --summary default-sweep-kfold ...` |"
        )
    for name, cohort in (
        ("pairs-norm", "the other validation persons' records"),
        ("pairs-norm-training-cohort", "the model's training records"),
    ):
        normed = _load(name)
        for row in (normed or {}).get("rows", []):
            if row["norm"] == "none" and (name != "pairs-norm" or row["model"] == "shipped"):
                continue  # the baseline itself, or a plain-cosine row pairs-norm already has
            p = row["pairs"]
            what = (
                f"`{' + '.join(row['fused'])}` joined (unit beat embeddings side by side)"
                if row.get("fused")
                else f"`{row['model']}`"
            )
            lever = (
                f"score normalisation `{row['norm']}` on {what}, cohort: {cohort}"
                if row["norm"] != "none"
                else f"{what}, plain cosine"
            )
            rows.append(
                f"| {lever} | every record pair {p['rank1']:.3f} / {100 * p['eer']:.1f} %; against "
                f"the shipped model's plain cosine: {_versus(row['versus_shipped_plain'])} | "
                f"`{normed['command']}` at {(normed.get('git_commit') or 'unknown')[:7]} |"
            )
    gap = _load("pairs-by-gap")
    if gap:
        bins = "; ".join(
            f"{b['gap']} {b['rank1']:.2f} ({b['rank1_ci'][0]:.2f}-{b['rank1_ci'][1]:.2f}) / "
            f"{100 * b['eer']:.1f} % ({b['pairs']} pairs)"
            for b in gap["by_gap"]
            if b["gap"] != "no date"
        )
        rows.append(
            f"| the shipped model by the days between a person's two records (every record "
            f"pair: rank-1 / EER) | {bins} | `{gap['command']}` |"
        )
    partial = _load("default-sweep-cinc-partial")
    if partial:
        ship = partial["shipped_pairs"]
        shipped = f"{ship['rank1']:.3f} / {100 * ship['eer']:.1f} %"
        for name, run in partial["runs"].items():
            if "-kfold-" in name:
                continue
            if run.get("finished"):
                v = run["validation"]
                rows.append(
                    f"| `{name}` (same sweep, finished) | every record pair {v['pairs_rank1']:.3f} / "
                    f"{100 * v['pairs_eer']:.1f} %; against the model shipped then: "
                    f"{_versus(run['versus_shipped'])} | `{partial['command'].split(' (')[0]}` at "
                    f"{partial['git_commit']} |"
                )
                continue
            last = run["last_epoch"]
            rows.append(
                f"| `{name}` (+ CinC 2017), stopped at epoch {run['epochs_run']} of "
                f"{run['epochs_planned']} | every record pair {last['val_pairs_rank1']:.3f} / "
                f"{100 * last['val_pairs_eer']:.1f} % (the model shipped then: {shipped}) | "
                f"`{partial['command'].split(' (')[0]}` at {partial['git_commit']} |"
            )
    return "\n".join(rows)


def _with_ci(figures: dict, key: str, pct: bool = False) -> str:
    scale = 100 if pct else 1
    fmt = "{:.1f}" if pct else "{:.3f}"
    low, high = figures.get(f"{key}_ci", [None, None])
    text = fmt.format(scale * figures[key])
    return text if low is None else f"{text} ({fmt.format(scale * low)}-{fmt.format(scale * high)})"


def _versus(diff: dict) -> str:
    """A paired difference: rank-1 and EER, each with its 95 % interval over persons."""
    r, e = diff["rank1_diff_ci"], diff["eer_diff_ci"]

    def signed(x: float, digits: int) -> str:  # no "-0.0" for a value that rounds to zero
        text = f"{x:+.{digits}f}"
        return "+" + text[1:] if float(text) == 0 else text

    text = (
        f"rank-1 {signed(diff['rank1_diff'], 3)} ({signed(r[0], 3)} to {signed(r[1], 3)}), EER "
        f"{signed(100 * diff['eer_diff'], 1)} ({signed(100 * e[0], 1)} to "
        f"{signed(100 * e[1], 1)}) points"
    )
    if "score_diff_ci" not in diff:
        return text
    c = diff["score_diff_ci"]
    return (
        f"{text}, selection score {signed(diff['score_diff'], 3)} ({signed(c[0], 3)} to "
        f"{signed(c[1], 3)})"
    )


def _variant_options(variant: dict) -> str:
    """The options a variant set, against the recipe's defaults (only those that differ)."""
    c, m, b = variant["train_config"], variant["model_config"], variant["beat_config"]
    parts = [
        f"window {b['before_s']:g} / {b['after_s']:g} s",
        f"input {'mV' if m['input_norm'] == 'none' else 'z-scored'}",
    ]
    if c["augment_stretch"] != 0.08 or c["augment_shift_s"] != 0.02:
        parts.append(
            f"stretch +-{100 * c['augment_stretch']:.0f} %, shift "
            f"+-{1000 * c['augment_shift_s']:.0f} ms"
        )
    if c.get("augment_gain", 0.2) != 0.2:
        parts.append(f"gain +-{100 * c['augment_gain']:.0f} %")
    if c.get("augment_smooth"):
        parts.append(f"smoothing {c['augment_smooth']:g}")
    if c.get("augment_axis_deg"):
        parts.append(f"lead axis +-{c['augment_axis_deg']:g} deg")
    if c.get("metric_loss", "arcface") != "arcface":
        parts.append(c["metric_loss"])
    if c.get("arcface_margin", 28.6) != 28.6:
        parts.append(f"ArcFace margin {c['arcface_margin']:g} deg")
    if tuple(m.get("widths", (32, 64, 128, 256))) != (32, 64, 128, 256):
        parts.append(f"widths {','.join(str(w) for w in m['widths'])}")
    if m.get("embedding_dim", 128) != 128:
        parts.append(f"{m['embedding_dim']}-d embedding")
    if variant.get("cinc_beats"):
        parts.append(f"+ CinC 2017 ({variant['cinc_beats']} beats a record)")
    return ", ".join(parts) + _variant_extras(variant)


def _ran_on(variant: dict) -> str:
    device = str(variant.get("device", "cpu"))
    if device.startswith("cuda"):
        return device.split("(", 1)[-1].rstrip(")") if "(" in device else "GPU"
    hw = variant.get("hardware", {})
    return f"{hw.get('cores', '?')} CPU cores"


def _against_shipped(variant: dict) -> str:
    if variant.get("versus_shipped"):
        return _versus(variant["versus_shipped"]) + " (every record pair)"
    return _same_persons(variant).strip().removeprefix("(").removesuffix(")") or "–"


def _variant_extras(variant: dict) -> str:
    """What a variant changed beyond the augmentation and the window (only when it did)."""
    train, model = variant["train_config"], variant["model_config"]
    extras = []
    if tuple(model.get("blocks", (1, 1, 1, 1))) != (1, 1, 1, 1):
        extras.append(f"blocks {','.join(str(b) for b in model['blocks'])}")
    if train.get("ema_decay"):
        extras.append(f"weight average (EMA) {train['ema_decay']:g} a step")
    if train.get("seed"):
        extras.append(f"seed {train['seed']}")
    if train.get("lr", 2e-3) != 2e-3:
        extras.append(f"learning rate {train['lr']:g}")
    if variant.get("init_from"):
        extras.append(f"started from `{variant['init_from']['run']}`'s backbone")
    if "MIT-BIH" not in variant.get("data", "MIT-BIH"):
        extras.append("without MIT-BIH")
    elif train.get("max_beats_per_record", 100) != 100:
        extras.append(f"{train['max_beats_per_record']} beats of each MIT-BIH record")
    if train.get("val_fraction"):
        extras.append(
            f"{100 * train['val_fraction']:.0f} % of the multi-record persons validate, "
            "the others train"
        )
    return "".join(", " + e for e in extras)


def _same_persons(variant: dict) -> str:
    """A variant validated on fewer persons compares only with the shipped model on them."""
    shipped = variant.get("shipped_same_persons")
    if not shipped:
        return ""
    if "skipped" in shipped:
        return f" (the shipped model could not be scored on the same persons: {shipped['skipped']})"
    return (
        f" on {shipped['persons']} persons / {shipped['probes']} probes, where the model shipped "
        f"then scores {shipped['rank1']:.3f} / {100 * shipped['eer']:.1f} %"
    )


def _note(variant: dict) -> str:
    return f" ({variant['note']})" if variant.get("note") else ""


def speed_table() -> str:
    """Speed on real records (benchmarks/real_speed.py): prepare, identify, train."""
    path = REPO / "benchmarks" / "results" / "real_speed.json"
    if not path.exists():
        return "_no results yet: run `python -m benchmarks.real_speed --model default`_"
    d = json.loads(path.read_text())
    rows = ["| what | figure |", "|---|---|"]
    for p in d["prepare"]:
        rows.append(
            f"| `prepare` {p['source']} ({p['records']:,} records, {p['workers']} workers) | "
            f"{p['records_per_s']:.1f} records/s, {p['beats_per_s']:.0f} beats/s |"
        )
    ident = d["identify"]
    for name, probe in ident["probes"].items():
        ms = probe["ms"]
        rows.append(
            f"| `identify` one 10 s record, 1 thread, gallery of {ident['gallery_persons']} "
            f"({name}: {probe['probe']}) | **{ms['identify']['median_ms']:.1f} ms** median "
            f"(p90 {ms['identify']['p90_ms']:.1f}): read {ms['read']['median_ms']:.1f}, beats "
            f"{ms['beats']['median_ms']:.1f}, embed {ms['embed']['median_ms']:.1f}, search "
            f"{ms['search']['median_ms']:.2f} (FAISS alone {ms['faiss']['median_ms']:.2f}) |"
        )
    rows.append(
        f"| apart | model load {1000 * ident['model_load_s']:.0f} ms, gallery open "
        f"{1000 * ident['gallery_open_s']:.1f} ms |"
    )
    t = d["training"]
    rows.append(
        f"| training, default architecture, {t['threads']} threads | {t['beats_per_s']:.0f} "
        f"beats/s ({t['train_identities']:,} identities) |"
    )
    hw = d["hardware"]
    rows += ["", f"{hw['cpu']}, {hw['cores']} cores; command: `{d['command']}`."]
    return "\n".join(rows)


BENCH = REPO / "benchmarks" / "results"
NO_PRODUCTION = "_no results yet: run `python -m benchmarks.cold_cli` and `... service_load`_"


def _production() -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The cold-CLI and service-load results, or ``None`` before both have run."""
    cold, load = BENCH / "cold_cli.json", BENCH / "service_load.json"
    if not cold.exists() or not load.exists():
        return None
    return json.loads(cold.read_text()), json.loads(load.read_text())


def production_table() -> str:
    """Cold CLI, service under load and ONNX Runtime's convolutions (issue #15 benchmarks)."""
    if (results := _production()) is None:
        return NO_PRODUCTION
    c, s = results
    rows = ["| what | figure | command |", "|---|---|---|"]
    names = {"before": f"before ({c['baseline']})", "now_torch": "`--backend torch`", "now": "now"}
    for case, label in (("identify", "cold `ecgbio identify`"), ("missing_file", "a missing file")):
        figures = ", ".join(
            f"{names[v]} {f['median_s']:.2f} s" for v, f in c["figures"][case].items()
        )
        rows.append(
            f"| {label}, process start to answer ({c['gallery_persons']} persons) | {figures} "
            f"(median of {c['figures'][case]['now']['runs']}) | `{c['command']}` |"
        )
    for r in s["rows"]:
        rows.append(
            f"| `ecgbio serve`, {r['clients']} client(s), gallery of {r['gallery_persons']:,}, a "
            f"writer enrolling meanwhile | **{r['answers_per_s']:.0f} answers/s**, p50 "
            f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; {r['errors']} errors, "
            f"{r.get('lost_enrolments', '?')} of {r.get('writer_enrolled', '?')} enrolments lost "
            f"| `{s['command']}` |"
        )
    conv = BENCH / "onnx_conv.json"
    if conv.exists():
        o = json.loads(conv.read_text())
        row = next(r for r in o["rows"] if r["batch"] == 28)
        rows.append(
            f"| embedding 28 beats, 1 thread: ONNX as exported / rewritten to 2-D convolutions / "
            f"torch | {row['conv1d_as_exported_ms']:.1f} / {row['conv2d_rewritten_ms']:.1f} / "
            f"{row['torch_ms']:.1f} ms | `{o['command']}` |"
        )
    hw = s["hardware"]
    rows += ["", f"{hw['cpu']}, {hw['cores']} cores, everything on the same machine."]
    return "\n".join(rows)


def production_summary_table() -> str:
    """The README's lines of the production table: a cold CLI call and the service's goal row."""
    if (results := _production()) is None:
        return NO_PRODUCTION
    c, s = results
    before, now = c["figures"]["identify"]["before"], c["figures"]["identify"]["now"]
    r = next(r for r in s["rows"] if r["clients"] == 4 and r["gallery_persons"] < 1000)
    hw = s["hardware"]
    return "\n".join(
        [
            "| what | figure | command |",
            "|---|---|---|",
            f"| cold `ecgbio identify`, process start to answer | {now['median_s']:.2f} s "
            f"(before ONNX and the numpy beats path: {before['median_s']:.2f} s) | "
            f"`{c['command']}` |",
            f"| `ecgbio serve`, {r['clients']} clients, {r['gallery_persons']} persons, a writer "
            f"enrolling meanwhile | {r['answers_per_s']:.0f} answers/s, p50 {r['p50_ms']:.1f} ms, "
            f"{r['errors']} errors, {r.get('lost_enrolments', '?')} enrolments lost | "
            f"`{s['command']}` |",
            "",
            f"{hw['cpu']}, {hw['cores']} cores; every setting: [docs/results.md]"
            "(docs/results.md#in-production).",
        ]
    )


def score_norm_table() -> str:
    """Score normalisations: rank-1 and EER (95 % CI) per measurement, and the rule's choice."""
    d = _load("score-norm")
    if d is None:
        return "_no results yet: run `python -m experiments.score_norm`_"
    names = list(d["figures"])
    head = " | ".join(f"{n}: rank-1 / EER % (95 % CI)" for n in names)
    rows = [f"| norm | {head} |", "|---" * (len(names) + 1) + "|"]
    for norm in ("none", "z", "t", "s", "as"):
        cells = []
        for name in names:
            f = d["figures"][name][norm]
            cells.append(f"{f['rank1']:.3f} / {100 * f['eer']:.1f}{_ci(f)}")
        rows.append(f"| {norm} | " + " | ".join(cells) + " |")
    what = "; ".join(f"{n}: {d['figures'][n]['what']}" for n in names)
    rows += [
        "",
        f"Chosen: **{d['chosen']}** ({d['why']}). Rule, fixed before measuring: {d['rule']}. "
        f"Measured: {what}. Command: `{d['command']}`.",
    ]
    return "\n".join(rows)


BLOCKS: dict[str, Callable[[], str]] = {
    "score-norm": score_norm_table,
    "speed": speed_table,
    "production": production_table,
    "production-summary": production_summary_table,
    "default-model": default_model_table,
    "default-summary": default_summary_table,
    "default-variants": default_variants_table,
    "default-levers": default_levers_table,
    "rpeaks": rpeaks_table,
    "protocols": protocols_table,
    "ecgid": ecgid_table,
    "ecgid-enrol-records": ecgid_enrol_records_table,
    "enrol-summary": enrol_summary,
}


def render_readme(text: str) -> str:
    """``text`` with every ``<!-- results:NAME -->`` block regenerated."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--write", action="store_true", help="update README.md and docs/model-card.md in place"
    )
    args = parser.parse_args()
    if args.write:
        for document in DOCUMENTS:
            document.write_text(render_readme(document.read_text()))
            print(f"updated {document}")
    else:
        for name, make in BLOCKS.items():
            print(f"## {name}\n{make()}\n")


if __name__ == "__main__":
    main()
