"""`xretrieve distill`: multilingual distillation (Reimers & Gurevych 2020), a student taught to map a sentence
and its translation onto the teacher's embedding of the sentence."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from xretrieve.config import DistillConfig
from xretrieve.errors import UserError
from xretrieve.formats import read_parallel
from xretrieve.train.trainer import output_folders, prompt_text, save_model, training_arguments, training_device


def distill(config: DistillConfig) -> Path:
    """Multilingual distillation (Reimers & Gurevych 2020): the student learns to map a source sentence and
    its translation onto the teacher's embedding of the source (MSE). Both sides a retriever encodes are
    taught: each pair is trained once with the query prompt and once with the passage prompt."""
    out, checkpoints, resume_from = output_folders(config)
    pairs = read_parallel(config.parallel)  # bad data fails before torch is imported

    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MSELoss

    from xretrieve.model import BiEncoder

    device = training_device(config.device)
    teacher = BiEncoder(config.teacher, device=device, max_seq_length=config.max_seq_length)
    student = BiEncoder(config.student or config.teacher, device=device, max_seq_length=config.max_seq_length)
    if student.dim != teacher.dim:
        raise UserError(f"student dimension {student.dim} != teacher dimension {teacher.dim}")

    dataset = _dataset(teacher, student, pairs, config)
    args = training_arguments(config, device, checkpoints)
    trainer = SentenceTransformerTrainer(
        model=student.model, args=args, train_dataset=dataset, loss=MSELoss(student.model)
    )
    trainer.train(resume_from_checkpoint=resume_from)
    settings = {
        "query_prompt_name": student.query_prompt_name,
        "passage_prompt_name": student.passage_prompt_name,
        "base_model": student.identity,
        "teacher": teacher.identity,
        "training": {
            **{k: v for k, v in asdict(config).items() if k not in ("out", "progress")},
            "pairs": len(pairs),
            "steps": trainer.state.global_step,
            "device": device,
        },
    }
    return save_model(student.model, out, settings, trainer.state.log_history)


def _dataset(teacher, student, pairs: list[tuple[str, str]], config: DistillConfig):
    """Columns source, translation, label (the teacher's embedding of the source), once per prompt role."""
    from datasets import Dataset

    sources, translations, labels = [], [], []
    roles = [
        (prompt_text(teacher.model, teacher.query_prompt_name), prompt_text(student.model, student.query_prompt_name)),
        (
            prompt_text(teacher.model, teacher.passage_prompt_name),
            prompt_text(student.model, student.passage_prompt_name),
        ),
    ]
    roles = list(dict.fromkeys((t or "", s or "") for t, s in roles))  # no prompts: one role
    source_texts = [source for source, _ in pairs]
    for teacher_prompt, student_prompt in roles:
        # prompts are written into the texts, as sentence-transformers itself prepends them
        targets = teacher.model.encode(
            source_texts,
            prompt=teacher_prompt,
            batch_size=config.batch_size,
            convert_to_numpy=True,
            show_progress_bar=config.progress,
        )
        sources += [student_prompt + s for s in source_texts]
        translations += [student_prompt + t for _, t in pairs]
        labels += list(targets.astype(np.float32))
    return Dataset.from_dict({"source": sources, "translation": translations, "label": labels})
