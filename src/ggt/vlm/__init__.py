"""VLM clients for analysis and judging: Gemini, OpenAI, OpenAI-compatible servers, and an offline heuristic.

    client = create_vlm("gemini", model="...")                  # key from GOOGLE_API_KEY / GEMINI_API_KEY
    result = await client.request_json([img], instruction, MySchema)
    report, prompt, result = await analyze_image(client, img, vlm_instruction())

Backends are imported on first use, so importing this package does not import the vendor SDKs.
Failures are `RetryableVLMError` or `PermanentVLMError` with a short `.reason`; the SDKs never retry on
their own: the engine decides.
"""

from ggt.vlm.analysis import (
    HeuristicAnalysis,
    VLMAnalysis,
    analyze_image,
    analyze_image_sync,
    report_from_analysis,
)
from ggt.vlm.base import (
    APIOptions,
    VLMClient,
    VLMOptions,
    available_vlms,
    create_vlm,
    register_vlm,
    vlm_class,
)
from ggt.vlm.errors import (
    EmptyResponseError,
    MalformedResponseError,
    PermanentVLMError,
    Reason,
    RetryableVLMError,
    SafetyBlockError,
    VLMConfigError,
    VLMError,
)
from ggt.vlm.result import Usage, VLMResult

__all__ = [
    "APIOptions",
    "EmptyResponseError",
    "HeuristicAnalysis",
    "MalformedResponseError",
    "PermanentVLMError",
    "Reason",
    "RetryableVLMError",
    "SafetyBlockError",
    "Usage",
    "VLMAnalysis",
    "VLMClient",
    "VLMConfigError",
    "VLMError",
    "VLMOptions",
    "VLMResult",
    "analyze_image",
    "analyze_image_sync",
    "available_vlms",
    "create_vlm",
    "register_vlm",
    "report_from_analysis",
    "vlm_class",
]
