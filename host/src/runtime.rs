//! The runtime: the engine, the deployed classes and the live objects,
//! shared by the gateway and every actor.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;
use wasmtime::Engine;

use crate::bindings::{Request, Response};
use crate::capabilities;
use crate::config::Config;
use crate::engine::{self, Class};
use crate::metrics::Metrics;
use crate::object::{Actor, Event, EventError, ObjectAddr, Objects};
use crate::storage::DataDir;

pub struct Runtime {
    config: Config,
    data: DataDir,
    engine: Engine,
    classes: HashMap<String, Arc<Class>>,
    objects: Objects,
    metrics: Metrics,
}

impl Runtime {
    /// Builds the engine and loads every configured class.
    pub fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let engine = engine::engine(&config)?;
        let linker = capabilities::linker(&engine)?;
        let data = DataDir::new(&config.data_dir);
        let mut classes = HashMap::new();
        for (name, class) in &config.classes {
            let settings = config.class_settings(class);
            let class = Class::load(&engine, &linker, &data, name, &class.path, settings)?;
            tracing::info!(class = name, hash = &class.hash()[..12], "class ready");
            classes.insert(name.clone(), Arc::new(class));
        }
        Ok(Arc::new(Runtime {
            objects: Objects::new(config.max_active as usize),
            config,
            data,
            engine,
            classes,
            metrics: Metrics::default(),
        }))
    }

    /// Delivers an HTTP request to object `name` of `class` and waits for
    /// its committed response.
    pub async fn fetch(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        request: Request,
    ) -> Result<Response, EventError> {
        let class = self.class(class)?;
        let object = Arc::new(ObjectAddr::new(class.name(), name));
        let (reply, response) = oneshot::channel();
        let event = Event::Fetch { request, reply };
        self.objects.deliver(object.id(), event, |start| {
            Actor::spawn(
                Arc::clone(self),
                Arc::clone(&object),
                Arc::clone(class),
                start,
            );
        })?;
        // The actor always replies unless it was dropped mid-event, which
        // only happens when the process is going away.
        response.await.unwrap_or(Err(EventError::ShuttingDown))
    }

    /// The deployed class `name`.
    pub fn class(&self, name: &str) -> Result<&Arc<Class>, EventError> {
        self.classes
            .get(name)
            .ok_or_else(|| EventError::NoSuchClass(name.to_string()))
    }

    /// Stops taking events and waits for every object to finish and close.
    pub async fn shut_down(&self) {
        self.objects.shut_down().await;
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn objects(&self) -> &Objects {
        &self.objects
    }

    /// How many objects have a live actor now.
    pub fn active_objects(&self) -> usize {
        self.objects.active()
    }
}
