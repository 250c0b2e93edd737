"""The CNI specification as data: versions, configs, results and their conversion, errors, CNI_ARGS.

Nothing here does I/O.
"""

from cnisdk.spec._errors import CNIError as CNIError
from cnisdk.spec._errors import ConversionError as ConversionError
from cnisdk.spec._errors import ErrorCode as ErrorCode
from cnisdk.spec._versions import ALL_VERSIONS as ALL_VERSIONS
from cnisdk.spec._versions import CURRENT_VERSION as CURRENT_VERSION
from cnisdk.spec._versions import parse_version as parse_version
from cnisdk.spec._versions import supports_check as supports_check
from cnisdk.spec._versions import supports_gc as supports_gc
from cnisdk.spec._versions import supports_prev_result_on_delete as supports_prev_result_on_delete
from cnisdk.spec._versions import supports_status as supports_status
from cnisdk.spec._versions import version_at_least as version_at_least
from cnisdk.spec._versions import version_family as version_family
