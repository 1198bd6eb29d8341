//! The console's answers to `pgwire`: the same commands through the simple
//! and the extended query protocol.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeResponse, DescribeStatementResponse, Response, Tag,
};
use pgwire::api::stmt::{NoopQueryParser, StoredStatement};
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::PgWireBackendMessage;

use super::command::{self, Command};
use super::table::Table;
use super::{control, reconfigure, show, to_pgwire, Access};
use crate::error::ProxyError;
use crate::logline::Clean;
use crate::shared::Shared;

/// One console session's command runner.
pub struct Console {
    shared: Arc<Shared>,
    access: Access,
    user: String,
    /// The session ends after this answer (`SHUTDOWN`).
    close: AtomicBool,
}

/// What a command produced.
enum Reply {
    Table(Table),
    /// A table after a notice about it.
    Noted(Table, &'static str),
    /// Done; the command tag.
    Done(&'static str),
    /// `SHOW HELP`: a notice, then the tag.
    Help,
}

impl Console {
    pub fn new(shared: Arc<Shared>, access: Access, user: String) -> Self {
        Self {
            shared,
            access,
            user,
            close: AtomicBool::new(false),
        }
    }

    pub fn should_close(&self) -> bool {
        self.close.load(Ordering::Relaxed)
    }

    async fn run(&self, sql: &str) -> Result<Reply, ProxyError> {
        let command = command::parse(sql).map_err(ProxyError::AdminSyntax)?;
        if self.access == Access::Stats && !command.read_only() {
            return Err(ProxyError::AdminReadOnly(command.tag().to_owned()));
        }
        let tag = command.tag();
        let shared = &self.shared;
        let done = match command {
            Command::Show(what) if what == "help" => return Ok(Reply::Help),
            Command::Show(what) if what == "queries" && !shared.queries.enabled() => {
                return Ok(Reply::Noted(
                    super::show_pgwarden::queries(shared),
                    "query_stats is off, so SHOW QUERIES is empty: SET query_stats = true to start counting",
                ));
            }
            Command::Show(what) => return show::show(shared, &what).map(Reply::Table),
            Command::Set { key, value } => reconfigure::set(shared, &key, &value).inspect(|()| {
                tracing::info!(user = %Clean(&self.user), key = %Clean(&key), "SET from the admin console");
            }),
            Command::Reload => reconfigure::reload(shared),
            Command::SaveConfig => reconfigure::save(shared),
            Command::Pause(db) => control::pause(shared, db.as_deref()).await,
            Command::Resume(db) => control::resume(shared, db.as_deref()),
            Command::Kill(db) => control::kill(shared, db.as_deref()).await,
            Command::WaitClose(db) => control::wait_close(shared, db.as_deref()).await,
            Command::Suspend => control::suspend(shared).await,
            Command::Switchover { db, node } => {
                super::switchover::switchover(shared, &db, &node).await
            }
            Command::Disable(db) => control::set_disabled(shared, &db, true),
            Command::Enable(db) => control::set_disabled(shared, &db, false),
            Command::Reconnect(db) => control::reconnect(shared, db.as_deref()),
            Command::DrainNode(node) => control::drain(shared, &node, true),
            Command::UndrainNode(node) => control::drain(shared, &node, false),
            Command::KillClient(id) => control::kill_client(shared, id).await,
            Command::Shutdown { wait_for_clients } => {
                control::shutdown(shared, wait_for_clients);
                self.close.store(true, Ordering::Relaxed);
                Ok(())
            }
        };
        done.map(|()| Reply::Done(tag))
    }

    /// The columns a command will answer with (for Describe): a `SHOW` is
    /// run to learn them; other commands answer no rows.
    fn describe(&self, sql: &str, formats: &[i16]) -> Vec<pgwire::api::results::FieldInfo> {
        match command::parse(sql) {
            Ok(Command::Show(what)) if what != "help" => show::show(&self.shared, &what)
                .map(|t| t.schema(formats))
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    async fn respond<C>(&self, client: &mut C, sql: &str, formats: &[i16]) -> PgWireResult<Response>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self.run(sql).await {
            Ok(Reply::Table(t)) => Ok(Response::Query(t.response(formats)?)),
            Ok(Reply::Noted(t, notice)) => {
                let info = ErrorInfo::new("NOTICE".into(), "00000".into(), notice.into());
                client
                    .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                        info,
                    )))
                    .await?;
                Ok(Response::Query(t.response(formats)?))
            }
            Ok(Reply::Done(tag)) => Ok(Response::Execution(Tag::new(tag))),
            Ok(Reply::Help) => {
                let mut info =
                    ErrorInfo::new("NOTICE".into(), "00000".into(), "Console usage".into());
                info.detail = Some(show::HELP.into());
                client
                    .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                        info,
                    )))
                    .await?;
                Ok(Response::Execution(Tag::new("SHOW")))
            }
            Err(e) => {
                self.shared.pooler_error(&e, "console error");
                Err(to_pgwire(&e))
            }
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Console {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(vec![self.respond(client, query, &[]).await?])
    }
}

#[async_trait]
impl ExtendedQueryHandler for Console {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(NoopQueryParser)
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self.describe(&target.statement, &[]);
        if fields.is_empty() {
            return Ok(DescribeStatementResponse::no_data());
        }
        Ok(DescribeStatementResponse::new(Vec::new(), fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        target: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let formats = formats(&target.result_column_format);
        let fields = self.describe(&target.statement.statement, &formats);
        if fields.is_empty() {
            return Ok(DescribePortalResponse::no_data());
        }
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let formats = formats(&portal.result_column_format);
        self.respond(client, &portal.statement.statement, &formats)
            .await
    }
}

fn formats(format: &Format) -> Vec<i16> {
    match format {
        Format::UnifiedText => Vec::new(),
        Format::UnifiedBinary => vec![1],
        Format::Individual(v) => v.clone(),
    }
}
