"""The settings' shape: one frozen dataclass per section of the configuration file, each
field with its embedded default. `gateway.config.load` fills them from the file and the
environment."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.address import SupportAddress

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The file a command reads when neither --config nor GATEWAY_CONFIG names one.
DEFAULT_CONFIG = Path("/etc/gateway/gateway.toml")
# The templates travel inside the package: gateway/templates links to the checkout's
# templates/, and the wheel carries them as package data.
PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///var/gateway.sqlite3"


@dataclass(frozen=True)
class SmtpSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2525
    lmtp: bool = False
    max_message_bytes: int = 25 * 1024 * 1024


@dataclass(frozen=True)
class ImapSettings:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 993
    ssl: bool = True
    starttls: bool = False
    username: str = ""
    password: str = ""
    folder: str = "INBOX"
    # Several folders to read instead of `folder`; the first is watched with IDLE.
    folders: tuple[str, ...] = ()
    processed_folder: str = ""
    poll_seconds: int = 60
    idle_seconds: int = 300
    timeout_seconds: float = 60.0
    ca_file: str = ""

    def __post_init__(self) -> None:
        # TOML gives a list and the environment a comma-separated string: keep a tuple.
        value = self.folders
        if isinstance(value, str):
            value = tuple(f.strip() for f in value.split(",") if f.strip())
        object.__setattr__(self, "folders", tuple(value))

    @property
    def all_folders(self) -> tuple[str, ...]:
        """The folders to read: `folders` when given, else just `folder`."""
        return self.folders or (self.folder,)


TRANSPORTS = ("smtp", "maildir")
LANGUAGES = ("fr", "en")


@dataclass(frozen=True)
class OutboundSettings:
    transport: str = "maildir"  # one of TRANSPORTS
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    username: str = ""
    password: str = ""
    maildir: str = "var/sent"
    poll_seconds: float = 5.0
    give_up_after_hours: int = 72
    # How long a sender holds the deliveries it claimed (renewed before each is sent).
    claim_seconds: int = 300
    # All the files one mail carries, before encoding. Base64 makes them a third larger, so
    # 7 MB of files gives a mail under the 10,240,000 bytes Postfix accepts by default.
    max_attachment_bytes: int = 7_000_000
    # The largest mail the relay accepts (Postfix's default message_size_limit). Every mail
    # the gateway writes stays under it: when a long text takes room, fewer files travel.
    max_message_bytes: int = 10_240_000


@dataclass(frozen=True)
class SupportSettings:
    address: str = "assistance@editeur.example"
    name: str = "Support Éditeur"
    case_tag: str = "Dossier"
    lead_address: str = "responsable.support@editeur.example"
    token_secret: str = ""
    language: str = "fr"
    answers_per_hour: int = 20
    trusted_authserv_id: str = ""
    # Notices about someone else's message: at most this many to one recipient per window
    # about one case, or about one author's messages; the rest go out later as one digest.
    notices_per_window: int = 5
    notice_window_minutes: int = 15
    # Answers (refusals, registration) to senders who are neither contacts nor agents, all
    # addresses together: backscatter to forged senders stays bounded.
    stranger_answers_per_hour: int = 30
    # `address` parsed once: it recognises itself and its +token forms (not a setting).
    mailbox: SupportAddress = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mailbox", SupportAddress.parse(self.address))


@dataclass(frozen=True)
class SalesAdminSettings:
    address: str = "adv@editeur.example"
    phone: str = "+33 1 23 45 67 89"


@dataclass(frozen=True)
class ReminderSettings:
    first_after_days: int = 3
    interval_days: int = 3
    max: int = 2
    autoclose_after_days: int = 3
    business_days: bool = False


@dataclass(frozen=True)
class CaseSettings:
    reopen_days: int = 7
    resolved_autoclose_days: int = 7


@dataclass(frozen=True)
class ContactSettings:
    registration_code_hours: int = 48
    registrations_per_sender_per_day: int = 3
    registrations_per_client_per_day: int = 10
    check_deliverability: bool = False


@dataclass(frozen=True)
class LicenceSettings:
    # Days before a licence's end date that its contacts are warned (0: never).
    expiry_notice_days: int = 30


@dataclass(frozen=True)
class SlaSettings:
    first_response_hours: dict[int, int] = field(
        default_factory=lambda: {1: 2, 2: 8, 3: 24, 4: 72})
    # A priority case is answered within this delay, or its criticality's when shorter.
    priority_first_response_hours: int = 4


@dataclass(frozen=True)
class JobSettings:
    """When `gateway serve` runs the scheduled jobs (see gateway/jobs/)."""
    enabled: bool = True
    timezone: str = "Europe/Paris"
    reminders_every_minutes: int = 15   # reminders, and the auto-close of resolved cases
    escalation_every_minutes: int = 5
    adv_digest_at: str = "08:00"        # local time of day
    licence_expiry_at: str = "00:15"    # local time of day
    expiry_notice_at: str = "09:00"     # local time of day: contacts warned a licence ends soon
    holidays: str = "FR"                # public holidays for business days: country[-subdivision]


@dataclass(frozen=True)
class ServeSettings:
    """How `gateway serve` shares its work out."""
    # The pipeline, the outbox sender and the scheduled jobs run in a worker process of
    # their own, so that the doors answer at once however busy they are; false keeps them
    # in threads of the serving process.
    worker_process: bool = True


@dataclass(frozen=True)
class HealthSettings:
    """The HTTP endpoint of `gateway serve` for /healthz and /metrics: off unless enabled,
    and on a loopback address only."""
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9325


@dataclass(frozen=True)
class LogSettings:
    """Where commands append their log. Empty: standard error; for `ingest` reading standard
    input (an MTA's pipe), syslog (facility mail) when /dev/log exists, else nowhere."""
    file: str = ""


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = DatabaseSettings()
    smtp: SmtpSettings = SmtpSettings()
    imap: ImapSettings = ImapSettings()
    outbound: OutboundSettings = OutboundSettings()
    support: SupportSettings = SupportSettings()
    sales_admin: SalesAdminSettings = SalesAdminSettings()
    reminders: ReminderSettings = ReminderSettings()
    cases: CaseSettings = CaseSettings()
    sla: SlaSettings = SlaSettings()
    contacts: ContactSettings = ContactSettings()
    licences: LicenceSettings = LicenceSettings()
    jobs: JobSettings = JobSettings()
    log: LogSettings = LogSettings()
    serve: ServeSettings = ServeSettings()
    health: HealthSettings = HealthSettings()
    templates_dir: str = str(PACKAGE_TEMPLATES)
    base_dir: str = "."

    def path(self, value: str) -> Path:
        """A configured path, resolved against the configuration file's directory."""
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
            rest = url[len(prefix):]
            if rest and rest != ":memory:":
                return prefix + str(self.path(rest).resolve())
        return url
