//! A scripted login hook on loopback: it records every request it receives and answers
//! with the status, body and delay the test set, closing the connection after each answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::upstream::{read_request, Recorded};

/// What the hook answers.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    /// Send `Content-Length`; without it the body ends when the connection closes.
    pub length: bool,
}

impl Answer {
    /// 200 `{"claims": claims}`.
    pub fn claims(claims: Value) -> Self {
        Self::status(200, &serde_json::json!({ "claims": claims }).to_string())
    }

    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_string(),
            delay: Duration::ZERO,
            length: true,
        }
    }

    /// Answers only after `delay`.
    pub fn after(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }

    /// Leaves out `Content-Length`, so only reading shows the size.
    pub fn without_length(self) -> Self {
        Self {
            length: false,
            ..self
        }
    }
}

#[derive(Clone)]
pub struct Hook {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Hook {
    pub async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind hook");
        let hook = Self {
            addr: listener.local_addr().expect("addr"),
            seen: Arc::default(),
            answer: Arc::new(Mutex::new(answer)),
        };
        let server = hook.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        hook
    }

    pub fn url(&self) -> String {
        format!("http://{}/internal/wx-login", self.addr)
    }

    /// The `[auth.on_login]` table for this hook.
    pub fn config(&self, timeout: &str) -> String {
        format!(
            "[auth.on_login]\nurl = \"{}\"\ntimeout = \"{timeout}\"\n",
            self.url()
        )
    }

    /// Answers every later request with `answer`.
    pub fn answer(&self, answer: Answer) {
        if let Ok(mut current) = self.answer.lock() {
            *current = answer;
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The JSON bodies received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("the hook got JSON"))
            .collect()
    }

    async fn serve(&self, mut stream: TcpStream) {
        let mut buffer = Vec::new();
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(request);
        }
        let answer = self.answer.lock().map(|a| a.clone()).expect("answer lock");
        tokio::time::sleep(answer.delay).await;
        let mut head = format!(
            "HTTP/1.1 {} Hook\r\ncontent-type: application/json\r\nconnection: close\r\n",
            answer.status
        );
        if answer.length {
            head.push_str(&format!("content-length: {}\r\n", answer.body.len()));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(answer.body.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}
