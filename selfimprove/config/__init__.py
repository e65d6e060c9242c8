"""Configuration schemas (pydantic, unknown keys forbidden): pipelines, eval suites, judge jobs, and the
sections they share (backend and training method are tagged unions). Validating one imports no torch."""

from ..errors import ConfigError
from .backend import BackendConfig, OpenAIBackendConfig, PluginBackendConfig, TransformersBackendConfig, VLLMBackendConfig, parse_backend
from .base import Strict, apply_override, format_validation_error, load_config, load_yaml, parse_override, plain_name
from .generate_job import GenerateJobConfig, load_generate_job
from .judge import PASS_THRESHOLD, DiagnoseConfig, JudgeJobConfig, load_job
from .pipeline import (
                      STAGES,
                      BuilderConfig,
                      DataConfig,
                      EvalConfig,
                      GenerateConfig,
                      PipelineConfig,
                      SamplingConfig,
                      ScorerConfig,
                      SelectConfig,
                      SplitConfig,
                      TaskConfig,
                      load_pipeline,
)
from .ray import RayConfig
from .suite import EvalSuiteConfig, load_suite
from .train import DistributedConfig, DPOTrainConfig, GRPOTrainConfig, LoraConfig, PluginTrainConfig, RewardConfig, SFTTrainConfig, TrainBase, TrainConfig

__all__ = [
    "BackendConfig", "BuilderConfig", "DistributedConfig", "DPOTrainConfig", "GRPOTrainConfig", "ConfigError", "DataConfig", "DiagnoseConfig", "EvalConfig",
    "EvalSuiteConfig", "GenerateConfig", "GenerateJobConfig", "RayConfig", "load_generate_job",
    "JudgeJobConfig", "LoraConfig", "OpenAIBackendConfig", "PASS_THRESHOLD", "PipelineConfig", "RewardConfig", "PluginBackendConfig", "PluginTrainConfig",
    "SFTTrainConfig", "STAGES", "SamplingConfig", "ScorerConfig", "SelectConfig", "SplitConfig", "Strict", "TaskConfig", "TrainBase",
    "TrainConfig", "TransformersBackendConfig", "VLLMBackendConfig", "apply_override", "format_validation_error", "load_config",
    "load_job", "load_pipeline", "load_suite", "load_yaml", "parse_backend", "parse_override", "plain_name",
]
