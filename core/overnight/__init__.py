"""overnight: offline batch generation with LLM batch APIs.

Submit a dataset's prompts to a provider's batch API, walk away, and collect every row
later from the same script, in order, without paying twice or losing a row.
"""

from overnight.errors import (
    BudgetExceeded,
    ConfigurationError,
    InvalidRequest,
    MissingCredentials,
    NotFinished,
    OfflineBatchGenerationNotFinished,
    OvernightError,
    PipelineNotFinished,
    ProviderError,
    ProviderNotFound,
    QuotaExceeded,
    RowProblem,
    StaleCache,
    StoreError,
    SubmissionRejected,
    UnconfirmedSubmission,
    ValidationError,
)
from overnight.hookspecs import hookimpl
from overnight.models import (
    Capabilities,
    ChatRequest,
    Chunk,
    GenerationParams,
    JobRef,
    JobState,
    JobStatus,
    Limits,
    Message,
    ModelSpec,
    ProviderInfo,
    QueueLimits,
    Result,
    ResultStatus,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "BudgetExceeded",
    "Capabilities",
    "ChatRequest",
    "Chunk",
    "ConfigurationError",
    "GenerationParams",
    "InvalidRequest",
    "JobRef",
    "JobState",
    "JobStatus",
    "Limits",
    "Message",
    "MissingCredentials",
    "ModelSpec",
    "NotFinished",
    "OfflineBatchGenerationNotFinished",
    "OvernightError",
    "PipelineNotFinished",
    "ProviderError",
    "ProviderInfo",
    "ProviderNotFound",
    "QueueLimits",
    "QuotaExceeded",
    "Result",
    "ResultStatus",
    "RowProblem",
    "StaleCache",
    "StoreError",
    "SubmissionRejected",
    "UnconfirmedSubmission",
    "Usage",
    "ValidationError",
    "hookimpl",
]

# The pipeline DSL (imported after the data model: these modules build on it).
from overnight.dataset import Dataset
from overnight.llm import LLM
from overnight.pipeline import Pipeline
from overnight.steps import (
    FilterRows,
    KeepColumns,
    LoadDataFromCSV,
    LoadDataFromDicts,
    LoadDataFromHub,
    LoadDataFromJSONL,
    LoadDataFromParquet,
    MapStep,
    Step,
    StepContext,
)
from overnight.policy import RunPolicy
from overnight.tasks import TextGeneration

__all__ += [
    "Dataset",
    "FilterRows",
    "KeepColumns",
    "LLM",
    "LoadDataFromCSV",
    "LoadDataFromDicts",
    "LoadDataFromHub",
    "LoadDataFromJSONL",
    "LoadDataFromParquet",
    "MapStep",
    "Pipeline",
    "RunPolicy",
    "Step",
    "StepContext",
    "TextGeneration",
]
