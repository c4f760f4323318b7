"""What fraction of positions in a LaTeX-heavy corpus can be answered under the brace rule?

    python benchmarks/brace_coverage.py [--tokenizer PATH_OR_ID]

The corpus is generated here: OmniMATH-style worked solutions dense in LaTeX (fractions, powers, sets, roots,
binomials, environments). For each aligned position, the position is answerable if some token-aligned prefix of
its next 16 tokens can be written inside \\boxed{} (`rpt_trl.can_be_boxed`). Reports the fractions for the first
token alone and for the 16-token window, with the tokenizer used (default: the embedded Gemma 3 270M).
"""

import argparse
import random

from rpt_trl import build_next_token_dataset, can_be_boxed


def latex_corpus(num_documents: int = 60, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    documents = []
    for _ in range(num_documents):
        a, b, c, n = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 9), rng.randint(3, 12)
        documents.append(
            f"Let $f(x) = \\frac{{{a}x^{{2}} + {b}}}{{x - {c}}}$. We need $\\lim_{{x \\to \\infty}} \\frac{{f(x)}}{{x}}$.\n"
            f"Since $\\frac{{{a}x^{{2}} + {b}}}{{x(x - {c})}} = \\frac{{{a} + {b}/x^{{2}}}}{{1 - {c}/x}}$, the limit is ${a}$.\n"
            f"Consider the set $S = \\{{{a}, {b}, {c}\\}}$ and $\\binom{{{n}}}{{2}} = {n * (n - 1) // 2}$. "
            f"Then $\\sqrt{{{a * a}}} = {a}$ and $\\sum_{{k=1}}^{{{n}}} k = {n * (n + 1) // 2}$.\n"
            f"\\begin{{align*}} x_{{1}} &= \\frac{{-{b} + \\sqrt{{{b}^{{2}} - 4 \\cdot {a} \\cdot {c}}}}}{{2 \\cdot {a}}} \\end{{align*}}\n"
            f"Therefore the answer is $\\boxed{{{a + b + c}}}$."
        )
    return documents


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", default=None, help="Tokenizer path or Hub id; default: the embedded Gemma.")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from rpt_trl.models import ensure_embedded_model

    name = args.tokenizer or str(ensure_embedded_model())
    tokenizer = AutoTokenizer.from_pretrained(name)
    corpus = latex_corpus()
    everything = build_next_token_dataset(
        corpus, tokenizer, min_context_tokens=1, skip_unanswerable_positions=False, show_progress=False
    )
    first_ok = window_ok = 0
    for example in everything:
        truth = example["ground_truth"].encode("utf-8")
        prefixes = [truth[:b].decode("utf-8") for b in example["ground_truth_boundaries"]]
        first_ok += bool(prefixes) and can_be_boxed(prefixes[0])
        window_ok += any(can_be_boxed(p) for p in prefixes)
    total = len(everything)
    brace = sum("{" in t or "}" in t for t in corpus)
    print(f"tokenizer: {args.tokenizer or 'embedded Gemma 3 270M'}; {len(corpus)} documents, {brace} with braces")
    print(f"aligned positions: {total}")
    print(f"first token can be boxed:             {first_ok / total:.4f} ({first_ok}/{total})")
    print(f"some prefix of 16 tokens can be boxed: {window_ok / total:.4f} ({window_ok}/{total})")


if __name__ == "__main__":
    main()
