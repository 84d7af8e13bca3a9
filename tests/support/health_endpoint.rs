//! A fake Security Server health-check port (X-Road's PR-OPMON, UG-SS and the Sidecar user guide): answers every
//! request like the proxy's Jetty does, byte for byte; the answer can be switched while it runs.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a fake health endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200, empty body.
    Healthy,
    /// 500 with this reason line, chunked.
    Failing(&'static str),
    /// 503 maintenance mode.
    Maintenance,
    /// Accepts and never answers.
    Hang,
}

/// A running fake endpoint; stops when dropped.
pub struct HealthEndpoint {
    answer: Arc<Mutex<Answer>>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthEndpoint {
    pub async fn start(ip: &str, port: u16, answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
        let shared = Arc::new(Mutex::new(answer));
        let answer = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let answer = *answer.lock().unwrap();
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = socket.read(&mut request).await;
                    let response = match answer {
                        Answer::Healthy => {
                            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_owned()
                        }
                        Answer::Failing(reason) => {
                            let body = format!("{reason}\n");
                            format!(
                                "HTTP/1.1 500 Server Error\r\nContent-Type: text/plain;charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                                body.len()
                            )
                        }
                        Answer::Maintenance => {
                            let body = "Health check interface is in maintenance mode.";
                            format!(
                                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        }
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                    };
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Self {
            answer: shared,
            task,
        }
    }

    /// Changes the answer for the next requests.
    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

impl Drop for HealthEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}
