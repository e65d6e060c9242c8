"""What selfimprove adds to vLLM's workers (`worker_extension_cls`, vLLM's own hook), called by name through
`LLM.collective_rpc`, plus the fix-up vLLM's in-place weight reload needs for models that tie their output layer."""

from __future__ import annotations


def retie_output_layer(model, hf_config) -> bool:
    """After vLLM's layerwise reload (`reload_weights`), point a tied output layer at the new input embeddings again
    and redo its post-load processing (on CPU: its packed GEMM weights). The reload leaves it with the old weights:
    vLLM's documented limitation ("tied parameters will only reflect processing from one of the parent layers").
    True when it re-tied."""
    if not getattr(hf_config, "tie_word_embeddings", False):
        return False
    head = getattr(model, "lm_head", None)
    embed = next((m for name, m in model.named_modules() if name.endswith("embed_tokens")), None)
    if head is None or embed is None or not hasattr(head, "weight"):
        raise RuntimeError("the model ties its output layer to its input embeddings, but no lm_head / embed_tokens was "
                           "found to tie again after the weight reload; use backend.hand_off: restart")
    head.weight = embed.weight
    method = getattr(head, "quant_method", None)
    if method is not None:
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
