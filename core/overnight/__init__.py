"""overnight: offline batch generation with LLM batch APIs.

Submit a dataset's prompts to a provider's batch API, walk away, and collect every row
later from the same script, in order, without paying twice or losing a row.
"""

from overnight.errors import (
    BudgetExceeded,
    ConfigurationError,
    DiskError,
    InvalidRequest,
    LostResults,
    MissingCredentials,
    NotFinished,
    OfflineBatchGenerationNotFinished,
    OnlineGenerationNotFinished,
    OvernightError,
    PipelineNotFinished,
    ProviderError,
    ProviderNotFound,
    ResultsGone,
    ProviderUnavailable,
    QuotaExceeded,
    RateLimited,
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
    OnlineLimits,
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
    RemoteJob,
    QueueLimits,
    Result,
    ResultStatus,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "BudgetExceeded",
    "Capabilities",
    "OnlineLimits",
    "ChatRequest",
    "Chunk",
    "ConfigurationError",
    "DiskError",
    "GenerationParams",
    "InvalidRequest",
    "JobRef",
    "JobState",
    "JobStatus",
    "Limits",
    "LostResults",
    "Message",
    "MissingCredentials",
    "ModelSpec",
    "NotFinished",
    "OfflineBatchGenerationNotFinished",
    "OnlineGenerationNotFinished",
    "OvernightError",
    "PipelineNotFinished",
    "ProviderError",
    "RemoteJob",
    "ProviderInfo",
    "ProviderNotFound",
    "QueueLimits",
    "ProviderUnavailable",
    "QuotaExceeded",
    "RateLimited",
    "Result",
    "ResultsGone",
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
from overnight.loaders import (
    LoadDataFromCSV,
    LoadDataFromDicts,
    LoadDataFromHub,
    LoadDataFromJSONL,
    LoadDataFromParquet,
)
from overnight.step import Step, StepContext
from overnight.transforms import FilterRows, KeepColumns, MapStep
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
