<#
.SYNOPSIS
  Install (or upgrade) the edugap school agent on Windows from the offline bundle this script
  sits in, as a scheduled task that starts at boot as SYSTEM and comes back within 5 minutes
  if it stops.

.DESCRIPTION
  Creates a Python venv in "$env:ProgramFiles\edugap-agent" and installs the edugap wheel and
  its dependencies (and `tzdata`, since Windows has no time-zone database for Python) from the
  bundle's wheels folder with no network; writes the config "$env:ProgramData\edugap\agent.toml"
  with `edugap-agent enrol` (readable only by SYSTEM and Administrators: it holds the MQTT
  password); registers the task "edugap-agent". Without -SchoolId an existing config is kept.
  Re-running it upgrades the package and keeps the state directory.

  The MQTT password is asked for (or read from -PasswordFile, or from the environment variable
  EDUGAP_AGENT_BROKER_PASSWORD): it is never a command-line argument, which would stay in the
  PowerShell history and show in the process list. The user name is the school id unless
  -Username says otherwise.

.EXAMPLE
  # from an elevated PowerShell, in the unpacked bundle's folder:
  powershell -ExecutionPolicy Bypass -File .\install.ps1 -SchoolId 79000001 `
      -Broker mqtts://mqtt.edugap.example:8883 -CaFile .\ca.pem -SpeedTester
#>
[CmdletBinding()]
param(
    [string]$SchoolId = "",
    [string]$Broker = "",
    [string]$Username = "",         # default: the school id, as the broker's ACL expects
    [string]$PasswordFile = "",     # default: $env:EDUGAP_AGENT_BROKER_PASSWORD, else asked for
    [string]$CaFile = "",
    [switch]$SpeedTester,           # this computer runs the school's speed tests (one per school)
    [string]$Wheels = "",           # default: the wheels folder beside this script
    [string]$IndexUrl = "",         # install from a package index instead (needs network)
    [string]$Python = "",           # a python.exe 3.11+; default: the `py` launcher's newest
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
if (-not $Wheels) { $Wheels = Join-Path $PSScriptRoot "wheels" }

function Fail($message) { Write-Error "install.ps1: $message"; exit 1 }

# --- the arguments, checked before anything changes ---------------------------------------
if ($SchoolId) {
    if ($SchoolId -notmatch '^[A-Za-z0-9_-]{1,64}$') {
        Fail "-SchoolId '$SchoolId': 1 to 64 letters, digits, '-' or '_'"
    }
    if ($Broker -notmatch '^mqtts?://[^/]+$') {
        Fail "-Broker '$Broker': must look like mqtts://host:port"
    }
    if ($CaFile -and -not (Test-Path -PathType Leaf $CaFile)) { Fail "-CaFile '$CaFile': no such file" }
    if ($PasswordFile -and -not (Test-Path -PathType Leaf $PasswordFile)) {
        Fail "-PasswordFile '$PasswordFile': no such file"
    }
} elseif ($Broker -or $Username -or $PasswordFile -or $CaFile) {
    Fail "-Broker, -Username, -PasswordFile and -CaFile need -SchoolId"
} elseif (-not (Test-Path $Config)) {
    Fail "no config at $Config yet: give -SchoolId and -Broker (Get-Help .\install.ps1)"
}
if (-not $IndexUrl -and -not (Get-ChildItem -Path $Wheels -Filter "edugap-*.whl" -ErrorAction SilentlyContinue)) {
    Fail "no edugap wheel in ${Wheels}: run this script from the unpacked offline bundle, or pass -IndexUrl URL"
}

$principal = New-Object Security.Principal.WindowsPrincipal(
    [Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    Fail "run from an elevated PowerShell (Run as administrator)"
}

# The password, before anything is installed: asked for only when nothing else gives it
$Password = ""
if ($SchoolId) {
    if ($PasswordFile) {
        $Password = (Get-Content -LiteralPath $PasswordFile -TotalCount 1)
    } elseif ($env:EDUGAP_AGENT_BROKER_PASSWORD) {
        $Password = $env:EDUGAP_AGENT_BROKER_PASSWORD
    } else {
        $secure = Read-Host -AsSecureString "MQTT password for school $SchoolId"
        $Password = [Runtime.InteropServices.Marshal]::PtrToStringAuto(
            [Runtime.InteropServices.Marshal]::SecureStringToBSTR($secure))
    }
    if (-not $Password) { Fail "no password given" }
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
    Fail "Python 3.11 or newer is needed: install the 64-bit one from python.org (tick 'for all users'), or pass -Python C:\path\python.exe"
}
& $Python -c "import sys; sys.exit(sys.version_info < (3, 11))"
if ($LASTEXITCODE -ne 0) { Fail "$Python is older than 3.11" }

Write-Host "==> Python venv in $Prefix"
if (-not (Test-Path (Join-Path $Prefix "Scripts\python.exe"))) {
    & $Python -m venv $Prefix
    if ($LASTEXITCODE -ne 0) { Fail "cannot create the venv in $Prefix" }
}
$VenvPython = Join-Path $Prefix "Scripts\python.exe"
if ($IndexUrl) {
    Write-Host "    from the package index $IndexUrl"
    & $VenvPython -m pip install --quiet --upgrade --index-url $IndexUrl edugap tzdata
} else {
    Write-Host "    from $Wheels (no network)"
    & $VenvPython -m pip install --quiet --upgrade --no-index --find-links $Wheels edugap tzdata
}
if ($LASTEXITCODE -ne 0) {
    Fail "pip could not install edugap: does the bundle cover this Python (see its README.txt)?"
}

# --- config -------------------------------------------------------------------------------
New-Item -ItemType Directory -Force -Path $DataDir, $StateDir | Out-Null
# only SYSTEM and Administrators may read the config (it holds the MQTT password) and the state
& icacls $DataDir /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F" /T /Q | Out-Null
if ($SchoolId) {
    Write-Host "==> writing $Config"
    $enrol = @("enrol", "--force", "--config", $Config, "--school-id", $SchoolId,
               "--broker", $Broker, "--password-file", "-",
               "--state-dir", $StateDir, "--log-file", $LogFile)
    if ($Username) { $enrol += @("--username", $Username) }
    if ($CaFile) { $enrol += @("--ca-file", (Resolve-Path $CaFile).Path) }
    if ($SpeedTester) { $enrol += "--speed-tester" }
    # the password goes to standard input: never an argument of a process
    $saved = $env:EDUGAP_AGENT_BROKER_PASSWORD
    $env:EDUGAP_AGENT_BROKER_PASSWORD = $null
    $Password | & $Agent @enrol
    $enrolled = $LASTEXITCODE
    $env:EDUGAP_AGENT_BROKER_PASSWORD = $saved
    $Password = $null
    if ($enrolled -ne 0) { Fail "the enrolment above was refused; nothing was started" }
} else {
    Write-Host "==> keeping the existing config $Config"
}

Write-Host "==> checking the config"
& $Agent check-config --config $Config
if ($LASTEXITCODE -ne 0) { Fail "fix $Config and run this script again" }

# --- scheduled task: at startup, as SYSTEM, never time-limited -----------------------------
# Why a scheduled task and not a Windows service: a service needs a service host (pywin32,
# about 10 MB per Python version and a post-install step, or a third-party wrapper binary
# from outside any package index); the task needs nothing beyond Windows and gives the same:
# started at boot as SYSTEM, and back within 5 minutes if it stops (see docs/agent.md).
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
# RestartCount: Task Scheduler's schema allows at most 255 (RestartOnFailure/Count); the
# 5-minute trigger above keeps bringing the agent back after that.
$settings = New-ScheduledTaskSettingsSet `
    -RestartCount 100 -RestartInterval (New-TimeSpan -Minutes 1) `
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
