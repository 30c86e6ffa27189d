"""The project's own multimodal LLM: connectors over specialist embeddings + LoRA.

- :mod:`.connectors`: MLP projector and Q-Former mapping face / voice / text vectors to soft
  tokens of the LLM;
- :mod:`.instructions`: labelled clips -> (prompt, grounded verdict JSON) examples, split by
  speaker; :mod:`.sources`: where the clips come from (analyses, the fusion table);
- :mod:`.model`: base causal LM + LoRA + connectors (forward, generate, save, load);
- :mod:`.train`: the two-stage fine-tuning run with checkpoints and resume;
- :mod:`.infer`: an answer as a verified verdict, or the fusion verdict and why.

Nothing heavy is imported here: torch, transformers and peft load with the submodules.
"""
