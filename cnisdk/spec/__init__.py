"""The CNI specification as data: versions, configs, results and their conversion, errors, CNI_ARGS.

Nothing here does I/O.
"""

from cnisdk.spec._convert import convert_result as convert_result
from cnisdk.spec._convert import to_current as to_current
from cnisdk.spec._errors import CNIError as CNIError
from cnisdk.spec._errors import ConversionError as ConversionError
from cnisdk.spec._errors import ErrorCode as ErrorCode
from cnisdk.spec._result import DNS as DNS
from cnisdk.spec._result import AnyResult as AnyResult
from cnisdk.spec._result import Interface as Interface
from cnisdk.spec._result import Interface040 as Interface040
from cnisdk.spec._result import IPConfig as IPConfig
from cnisdk.spec._result import IPConfig020 as IPConfig020
from cnisdk.spec._result import IPConfig040 as IPConfig040
from cnisdk.spec._result import Result as Result
from cnisdk.spec._result import Result020 as Result020
from cnisdk.spec._result import Result040 as Result040
from cnisdk.spec._result import Route as Route
from cnisdk.spec._result import parse_cidr as parse_cidr
from cnisdk.spec._result import parse_ip as parse_ip
from cnisdk.spec._result import result_to_dict as result_to_dict
from cnisdk.spec._result import result_to_json as result_to_json
from cnisdk.spec._result_decode import empty_result as empty_result
from cnisdk.spec._result_decode import parse_prev_result as parse_prev_result
from cnisdk.spec._result_decode import parse_result as parse_result
from cnisdk.spec._versions import ALL_VERSIONS as ALL_VERSIONS
from cnisdk.spec._versions import CURRENT_VERSION as CURRENT_VERSION
from cnisdk.spec._versions import parse_version as parse_version
from cnisdk.spec._versions import supports_check as supports_check
from cnisdk.spec._versions import supports_gc as supports_gc
from cnisdk.spec._versions import supports_prev_result_on_delete as supports_prev_result_on_delete
from cnisdk.spec._versions import supports_status as supports_status
from cnisdk.spec._versions import version_at_least as version_at_least
from cnisdk.spec._versions import version_family as version_family

__all__ = [
    "ALL_VERSIONS",
    "CURRENT_VERSION",
    "DNS",
    "AnyResult",
    "CNIError",
    "ConversionError",
    "ErrorCode",
    "IPConfig",
    "IPConfig020",
    "IPConfig040",
    "Interface",
    "Interface040",
    "Result",
    "Result020",
    "Result040",
    "Route",
    "convert_result",
    "empty_result",
    "parse_cidr",
    "parse_ip",
    "parse_prev_result",
    "parse_result",
    "parse_version",
    "result_to_dict",
    "result_to_json",
    "supports_check",
    "supports_gc",
    "supports_prev_result_on_delete",
    "supports_status",
    "to_current",
    "version_at_least",
    "version_family",
]
