"""What selfimprove adds to vLLM's workers (`worker_extension_cls`, vLLM's own hook), called by name through
`LLM.collective_rpc`, plus the fix-up vLLM's in-place weight reload needs for models that tie their output layer."""

from __future__ import annotations

EMBEDDING_NAMES = ("embed_tokens", "wte", "word_embeddings")  # the input embeddings' module name in vLLM's models


def retie_output_layer(model, hf_config) -> bool:
    """After vLLM's layerwise reload (`reload_weights`), point a tied output layer at the new input embeddings again
    and redo its post-load processing (on CPU: its packed GEMM weights). The reload leaves it with the old weights:
    vLLM's documented limitation ("tied parameters will only reflect processing from one of the parent layers").
    True when it re-tied; False when nothing needs it (untied, or logits computed from the embeddings themselves,
    as Gemma-2 and Command-R do). Raises when a tied head is there but no input embeddings to tie it to."""
    if not getattr(hf_config, "tie_word_embeddings", False):
        return False
    head = getattr(model, "lm_head", None)
    if head is None or not hasattr(head, "weight"):
        return False
    embed = next((m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in EMBEDDING_NAMES), None)
    if embed is None:
        raise RuntimeError("the model ties its output layer to its input embeddings, but no input embeddings "
                           f"({'/'.join(EMBEDDING_NAMES)}) were found to tie it to after the weight reload")
    if head is embed:
        return False
    head.weight = embed.weight
    method = getattr(head, "quant_method", None)
    if type(method).__name__ == "UnquantizedEmbeddingMethod":  # a quantized head's processing is not redone twice
        method.process_weights_after_loading(head)
    return True


class HandOffExtension:
    """Mixed into each vLLM worker (`self` is the worker): the hand-off's in-place model load."""

    def selfimprove_load_in_place(self, weights_path: str) -> bool:
        """Load a model folder's weights into this worker's model in place; True when the output layer was re-tied."""
        self.reload_weights(weights_path=weights_path)
        runner = self.model_runner
        return retie_output_layer(runner.get_model(), runner.model_config.hf_config)


EXTENSION = f"{__name__}.HandOffExtension"
