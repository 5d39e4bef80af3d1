"""Query generators. Each answers one call, `generate(docs, lang, num, seed) -> [(label, [query, ...]) per doc]`,
and carries an `identity` (what a run's plan records) and `whole_shard` (whether it takes a shard at once):

- `seq2seq.Seq2SeqGenerator`: any Hugging Face seq2seq model (mT5, mBART, T5), sampled with top-k as in xQG;
- `apertium.TranslationGenerator`: the passage's title and lead sentence, machine-translated offline;
- `llm.LLMGenerator`: an LLM asked for queries, its replies checked as in `synthesize`.
"""
