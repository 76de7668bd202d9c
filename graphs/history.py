"""When a question needs the conversation before it.

Earlier turns help a question that refers back ("Where was she born?", "And in what year?");
they hurt one that does not: a small model reads an unrelated earlier answer as a cue and
answers the new question wrong, and more confidently (issue 14 measured 0.83 right alone, 0.99
wrong after one unrelated turn). So the graph shows the answerer the history only when the
question refers to something outside itself: a third-person pronoun or a demonstrative, the
conversation's own people (I, you, we), or an elliptical opening ("And ...", "What about
..."). A question that names what it asks about is answered as if asked alone.
"""

from __future__ import annotations

import re

_REFERS_BACK = re.compile(
    r"\b(?:he|she|it|they|him|her|them|his|hers|its|their|theirs|himself|herself|itself|"
    r"themselves|this|that|these|those|there|then|i|me|my|mine|we|us|our|you|your|"
    r"former|latter|above|previous|earlier|same|else|too|also)\b"
    r"|^\s*(?:and|but|or|so|what\s+about|how\s+about)\b",
    re.IGNORECASE,
)


def refers_back(question: str) -> bool:
    """True when ``question`` needs earlier turns to be understood (see the module)."""
    return _REFERS_BACK.search(question) is not None
