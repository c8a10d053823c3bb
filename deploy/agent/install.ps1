<#
.SYNOPSIS
  Install (or upgrade) the edugap school agent on Windows, as a scheduled task that starts at
  boot as SYSTEM and restarts on failure.

.DESCRIPTION
  Creates a Python venv in "$env:ProgramFiles\edugap-agent", installs the `edugap` package (and
  `tzdata`, since Windows has no time-zone database for Python), writes the config
  "$env:ProgramData\edugap\agent.toml" (kept if it exists; readable only by SYSTEM and
  Administrators because it holds the MQTT password), and registers the task "edugap-agent".
  Re-running it upgrades the package and keeps the config and the state directory.

.EXAMPLE
  # from an elevated PowerShell, in the folder holding this script:
  powershell -ExecutionPolicy Bypass -File .\install.ps1 -SchoolId 79000001 `
      -Broker mqtts://mqtt.edugap.example:8883 -Username 79000001 -Password 'secret' `
      -CaFile .\ca.pem
#>
[CmdletBinding()]
param(
    [string]$SchoolId = "",
    [string]$Broker = "",
    [string]$Username = "",
    [string]$Password = "",
    [string]$CaFile = "",
    [string]$Package = "edugap",   # or a wheel file path
    [string]$Python = "",          # a python.exe 3.11+; default: the `py` launcher's newest
    [switch]$NoStart
)
$ErrorActionPreference = "Stop"

$Prefix = Join-Path $env:ProgramFiles "edugap-agent"
$DataDir = Join-Path $env:ProgramData "edugap"
$Config = Join-Path $DataDir "agent.toml"
$StateDir = Join-Path $DataDir "state"
$LogFile = Join-Path $DataDir "agent.log"
$TaskName = "edugap-agent"
$Agent = Join-Path $Prefix "Scripts\edugap-agent.exe"

function Fail($message) { Write-Error "install.ps1: $message"; exit 1 }

$principal = New-Object Security.Principal.WindowsPrincipal(
    [Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    Fail "run from an elevated PowerShell (Run as administrator)"
}

# --- Python -------------------------------------------------------------------------------
if (-not $Python) {
    $launcher = Get-Command py -ErrorAction SilentlyContinue
    if ($launcher) {
        $Python = (& py -3 -c "import sys; print(sys.executable)").Trim()
    } else {
        $found = Get-Command python -ErrorAction SilentlyContinue
        if ($found) { $Python = $found.Source }
    }
}
if (-not $Python) {
    Fail "Python 3.11 or newer is needed: install it from python.org (tick 'for all users'), or pass -Python C:\path\python.exe"
}
& $Python -c "import sys; sys.exit(sys.version_info < (3, 11))"
if ($LASTEXITCODE -ne 0) { Fail "$Python is older than 3.11" }

Write-Host "==> Python venv in $Prefix"
if (-not (Test-Path (Join-Path $Prefix "Scripts\python.exe"))) {
    & $Python -m venv $Prefix
    if ($LASTEXITCODE -ne 0) { Fail "cannot create the venv in $Prefix" }
}
$VenvPython = Join-Path $Prefix "Scripts\python.exe"
& $VenvPython -m pip install --quiet --upgrade pip
& $VenvPython -m pip install --quiet --upgrade $Package tzdata
if ($LASTEXITCODE -ne 0) { Fail "pip could not install $Package" }

# --- config -------------------------------------------------------------------------------
function TomlString([string]$s) { '"' + $s.Replace('\', '\\').Replace('"', '\"') + '"' }

New-Item -ItemType Directory -Force -Path $DataDir, $StateDir | Out-Null
if (Test-Path $Config) {
    Write-Host "==> keeping the existing config $Config"
} else {
    Write-Host "==> writing $Config"
    $lines = @(
        "# edugap agent config; every key is explained in docs/agent.md and the example config.",
        "state_dir = $(TomlString $StateDir)",
        "log_file = $(TomlString $LogFile)",
        "",
        "[school]"
    )
    if ($SchoolId) { $lines += "school_id = $(TomlString $SchoolId)" }
    else { $lines += '# school_id = "79000001"' }
    $lines += @("", "[broker]")
    if ($Broker) { $lines += "url = $(TomlString $Broker)" }
    else { $lines += '# url = "mqtts://mqtt.edugap.example:8883"' }
    if ($Username) { $lines += "username = $(TomlString $Username)" }
    if ($Password) { $lines += "password = $(TomlString $Password)" }
    if ($CaFile) {
        $ca = Join-Path $DataDir "ca.pem"
        Copy-Item -Force $CaFile $ca
        $lines += "ca_file = $(TomlString $ca)"
    }
    # UTF-8 without a byte-order mark: TOML parsers reject the BOM
    [IO.File]::WriteAllLines($Config, [string[]]$lines, (New-Object Text.UTF8Encoding($false)))
}
# only SYSTEM and Administrators may read the config (it holds the MQTT password) and the state
& icacls $DataDir /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F" /T /Q | Out-Null

Write-Host "==> checking the config"
& $Agent check-config --config $Config
if ($LASTEXITCODE -ne 0) { Fail "fix $Config and run this script again" }

# --- scheduled task: at startup, as SYSTEM, restarted on failure, never time-limited --------
Write-Host "==> scheduled task $TaskName"
$action = New-ScheduledTaskAction -Execute $Agent -Argument "run --config `"$Config`"" `
    -WorkingDirectory $DataDir
# At startup; and every 5 minutes, because Task Scheduler's restart-on-failure does not fire
# when a running program exits. A still-running agent makes the extra start a no-op
# (MultipleInstances IgnoreNew); a dead one is back within 5 minutes.
$trigger = @(
    (New-ScheduledTaskTrigger -AtStartup),
    (New-ScheduledTaskTrigger -Once -At (Get-Date) -RepetitionInterval (New-TimeSpan -Minutes 5))
)
$taskUser = New-ScheduledTaskPrincipal -UserId "SYSTEM" -LogonType ServiceAccount -RunLevel Highest
$settings = New-ScheduledTaskSettingsSet `
    -RestartCount 9999 -RestartInterval (New-TimeSpan -Minutes 1) `
    -ExecutionTimeLimit ([TimeSpan]::Zero) `
    -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -StartWhenAvailable `
    -MultipleInstances IgnoreNew
if (Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue) {
    Stop-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
    Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
}
Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger `
    -Principal $taskUser -Settings $settings `
    -Description "edugap school agent: bandwidth, availability and inventory reports" | Out-Null

if (-not $NoStart) {
    Start-ScheduledTask -TaskName $TaskName
    Start-Sleep -Seconds 5
    & $Agent status --config $Config
}
Write-Host ""
Write-Host "Installed. Log: $LogFile   Check it: & '$Agent' status --config '$Config'"
