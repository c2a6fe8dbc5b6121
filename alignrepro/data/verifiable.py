"""Programmatically verifiable tasks: generators, answer extraction/checking, and the oracle critic.

One import point for the three concerns, which live in `verifiable_tasks`, `verifiable_answers` and `oracle`.
"""

from alignrepro.data.oracle import OracleCritic, oracle_critique
from alignrepro.data.verifiable_answers import Extracted, extract_answer, find_answer, is_correct
from alignrepro.data.verifiable_tasks import KINDS, generate_tasks

__all__ = [
    "KINDS",
    "Extracted",
    "OracleCritic",
    "extract_answer",
    "find_answer",
    "generate_tasks",
    "is_correct",
    "oracle_critique",
]
