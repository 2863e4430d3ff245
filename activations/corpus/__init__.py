"""tinyworld: the project's own deterministic training text.

A seeded, infinite stream of short documents (``iter_documents``) mixing indirect object
identification (IOI) sentences, subject-verb agreement (SVA) sentences, two-person
dialogues, a small fictional world of people, cities and creatures (statements, Q/A and
fact-free mentions), repeated lists, vignettes, short stories, counting, dates, arithmetic
and small Python snippets (``stream.MIXTURE`` gives the shares). Evaluation sets in the
Marks et al. 2024 clean/patch form come from the same generators (``ioi_examples``,
``sva_examples``), ``entity_prompts`` asks about known and unknown entities,
``never_asked_prompts`` about either half of the never-asked ones, and
``made_up_entity_prompts`` about names the corpus never uses.

Held-out rule
-------------
- IOI templates and SVA frames are split into training and held-out ones. A held-out
  template or frame never occurs anywhere in ``split="train"`` text.
- About 20% of first names (``names.HELDOUT_NAMES``) are held out of IOI and SVA: they never
  fill a name slot of an IOI sentence, an SVA sentence or a dialogue (which uses the same
  "the other name" logic) in training text. They do appear in the other training text
  (lists, vignettes, stories, dates, arithmetic, code), so they are ordinary, trained single
  tokens.
- World entities: facts of unknown entities are never written. Questions about
  ``unknown_train`` entities are answered "I do not know." in training; ``unknown_heldout``
  entities are only mentioned, never asked about. Each question type has held-out phrasings.
- ``split="heldout"`` streams and examples use only held-out templates, frames, names,
  question phrasings and ``unknown_heldout`` entities, so held-out loss and accuracies
  measure generalisation, not recall of training sentences.
"""

from activations.corpus.agreement import sva_examples
from activations.corpus.ioi import ioi_examples
from activations.corpus.stream import iter_documents, iter_tagged_documents
from activations.corpus.world import entity_prompts, made_up_entity_prompts, never_asked_prompts

DATASET_NAME = "tinyworld"

__all__ = ["DATASET_NAME", "entity_prompts", "ioi_examples", "iter_documents", "iter_tagged_documents",
           "made_up_entity_prompts", "never_asked_prompts", "sva_examples"]
