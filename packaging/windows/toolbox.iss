; Inno Setup 6 script for the Toolbox installer (Windows).
;
; Compiled by `python packaging\build.py --target windows-installer`, which passes:
;   /DAppVersion=0.1.0  /DVersionNumbers=0.1.0.0  /DSourceDir=<dist\Toolbox>
;   /O<dist>  /F<Toolbox-...-setup>
;   and, when a signing certificate is configured, /Stoolboxsign=... /DSignTool=toolboxsign
;
; Installs for the current user only (no administrator rights) into
; %LOCALAPPDATA%\Programs\Toolbox, with a Start menu shortcut, an optional desktop icon and
; an uninstaller. The `toolbox` command is bin\toolbox.cmd (it runs toolbox-cli.exe: on
; Windows a toolbox.exe cannot sit beside Toolbox.exe), and bin\ is added to the user's PATH
; and removed again on uninstall. VirtualBox or QEMU is only looked for to show a note;
; Toolbox itself explains what to install on first launch.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef VersionNumbers
  #define VersionNumbers "0.0.0.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\Toolbox"
#endif
#define AppName "Toolbox"
#define AppExe "Toolbox.exe"
#define CliDir "bin"

[Setup]
AppId={{5B0E6C1A-3F7D-4B8E-9C21-7A4D2E6F9B13}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=The Toolbox authors
VersionInfoVersion={#VersionNumbers}
VersionInfoDescription={#AppName} installer
PrivilegesRequired=lowest
DefaultDirName={localappdata}\Programs\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
DisableDirPage=auto
UsePreviousAppDir=yes
SetupIconFile=..\..\resources\app\toolbox.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
ChangesEnvironment=yes
CloseApplications=yes
WizardStyle=modern
Compression=lzma2/max
SolidCompression=yes
OutputDir=..\..\dist
OutputBaseFilename=Toolbox-{#AppVersion}-setup
#ifdef SignTool
SignTool={#SignTool}
SignedUninstaller=yes
#endif

[Tasks]
Name: "addtopath"; Description: "Add the &toolbox command to PATH"; GroupDescription: "Command line:"
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; A previous version's Python runtime must not mix with this one's.
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
const
  EnvironmentKey = 'Environment';

var
  HypervisorPage: TOutputMsgWizardPage;

{ True when Dir is one of the ';'-separated entries of Paths (case and trailing '\' ignored). }
function PathListContains(Paths, Dir: string): Boolean;
var
  Rest, Item: string;
  P: Integer;
begin
  Result := False;
  Rest := Paths + ';';
  while Length(Rest) > 0 do
  begin
    P := Pos(';', Rest);
    Item := Trim(Copy(Rest, 1, P - 1));
    Rest := Copy(Rest, P + 1, Length(Rest));
    if (Item <> '') and (CompareText(RemoveBackslashUnlessRoot(Item), RemoveBackslashUnlessRoot(Dir)) = 0) then
    begin
      Result := True;
      Exit;
    end;
  end;
end;

{ Paths without any entry equal to Dir. }
function PathListWithout(Paths, Dir: string): string;
var
  Rest, Item: string;
  P: Integer;
begin
  Result := '';
  Rest := Paths + ';';
  while Length(Rest) > 0 do
  begin
    P := Pos(';', Rest);
    Item := Copy(Rest, 1, P - 1);
    Rest := Copy(Rest, P + 1, Length(Rest));
    if (Trim(Item) <> '') and (CompareText(RemoveBackslashUnlessRoot(Trim(Item)), RemoveBackslashUnlessRoot(Dir)) <> 0) then
    begin
      if Result <> '' then
        Result := Result + ';';
      Result := Result + Item;
    end;
  end;
end;

function UserPath(): string;
begin
  if not RegQueryStringValue(HKEY_CURRENT_USER, EnvironmentKey, 'Path', Result) then
    Result := '';
end;

procedure AddToUserPath(Dir: string);
var
  Paths: string;
begin
  Paths := UserPath();
  if PathListContains(Paths, Dir) then
    Exit;
  if (Paths <> '') and (Copy(Paths, Length(Paths), 1) <> ';') then
    Paths := Paths + ';';
  RegWriteExpandStringValue(HKEY_CURRENT_USER, EnvironmentKey, 'Path', Paths + Dir);
end;

procedure RemoveFromUserPath(Dir: string);
var
  Paths: string;
begin
  Paths := UserPath();
  if PathListContains(Paths, Dir) then
    RegWriteExpandStringValue(HKEY_CURRENT_USER, EnvironmentKey, 'Path', PathListWithout(Paths, Dir));
end;

function FileOnPath(Name: string): Boolean;
begin
  Result := FileSearch(Name, GetEnv('PATH')) <> '';
end;

{ VirtualBox or QEMU, found the way Toolbox looks for them: PATH, the usual install folders,
  VirtualBox's own environment variable and registry key. }
function HypervisorFound(): Boolean;
var
  Dir: string;
begin
  Result := FileOnPath('VBoxManage.exe') or FileOnPath('qemu-system-x86_64.exe')
    or FileExists(ExpandConstant('{commonpf64}\Oracle\VirtualBox\VBoxManage.exe'))
    or FileExists(ExpandConstant('{commonpf64}\qemu\qemu-system-x86_64.exe'));
  if not Result then
  begin
    Dir := GetEnv('VBOX_MSI_INSTALL_PATH');
    if Dir = '' then
      Dir := GetEnv('VBOX_INSTALL_PATH');
    if (Dir <> '') and FileExists(AddBackslash(Dir) + 'VBoxManage.exe') then
      Result := True
    else if RegQueryStringValue(HKEY_LOCAL_MACHINE, 'SOFTWARE\Oracle\VirtualBox', 'InstallDir', Dir) then
      Result := FileExists(AddBackslash(Dir) + 'VBoxManage.exe');
  end;
end;

procedure InitializeWizard();
begin
  HypervisorPage := CreateOutputMsgPage(wpSelectTasks,
    'A hypervisor is needed to run containers',
    'Toolbox runs its Linux machine in VirtualBox or QEMU.',
    'Neither VirtualBox nor QEMU was found on this computer. You can install Toolbox now ' +
    'and one of them later: when Toolbox starts it says which to get and where.');
end;

function ShouldSkipPage(PageID: Integer): Boolean;
begin
  Result := (HypervisorPage <> nil) and (PageID = HypervisorPage.ID) and HypervisorFound();
end;

procedure CurStepChanged(CurStep: TSetupStep);
begin
  if (CurStep = ssPostInstall) and WizardIsTaskSelected('addtopath') then
    AddToUserPath(ExpandConstant('{app}\{#CliDir}'));
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then
    RemoveFromUserPath(ExpandConstant('{app}\{#CliDir}'));
end;
