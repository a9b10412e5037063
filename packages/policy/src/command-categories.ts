/**
 * FLARE's admin commands and the category each belongs to (COMMAND_CATEGORIES in
 * nvflare/security/security.py, FLARE 2.5-2.9). A right given to a category in authorization.json applies to
 * every command of the category unless the command itself is listed (a command right overrides its
 * category). `submit_job`, `clone_job` and `byoc` are standalone rights with no category.
 */
export const FLARE_COMMAND_CATEGORIES: ReadonlyMap<string, string> = new Map([
  ['abort', 'manage_job'],
  ['abort_job', 'manage_job'],
  ['delete_job', 'manage_job'],
  ['delete_workspace', 'manage_job'],
  ['configure_job_log', 'manage_job'],
  ['check_status', 'view'],
  ['show_scopes', 'view'],
  ['show_stats', 'view'],
  ['reset_errors', 'view'],
  ['show_errors', 'view'],
  ['list_jobs', 'view'],
  ['get_job_meta', 'view'],
  ['sys_info', 'operate'],
  ['report_resources', 'operate'],
  ['report_env', 'operate'],
  ['restart', 'operate'],
  ['shutdown', 'operate'],
  ['remove_client', 'operate'],
  ['disable_client', 'operate'],
  ['enable_client', 'operate'],
  ['set_timeout', 'operate'],
  ['call', 'operate'],
  ['configure_site_log', 'operate'],
  ['cat', 'shell_commands'],
  ['grep', 'shell_commands'],
  ['head', 'shell_commands'],
  ['ls', 'shell_commands'],
  ['pwd', 'shell_commands'],
  ['tail', 'shell_commands'],
  ['download_job', 'download_job'],
]);
