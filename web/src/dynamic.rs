//! Type-erased reactive values for the views.
//!
//! Leptos renders each `move || ...` closure through its own copy of the rendering code (one
//! render effect, build and rebuild per closure type), which made up a large part of the
//! release `.wasm`. The views pass their reactive texts, flags and attribute values as the
//! boxed closures below instead, so that code exists once per output type.

use leptos::ev::{Event, MouseEvent};
use std::sync::Arc;

/// A reactive text (a text node, an attribute, a property or a style value).
pub type Text = Arc<dyn Fn() -> String + Send + Sync>;

/// A reactive flag (a class toggle, a `checked` or `disabled` property).
pub type Flag = Arc<dyn Fn() -> bool + Send + Sync>;

/// `f` as a [`Text`].
pub fn text(f: impl Fn() -> String + Send + Sync + 'static) -> Text {
    Arc::new(f)
}

/// `f` as a [`Flag`].
pub fn flag(f: impl Fn() -> bool + Send + Sync + 'static) -> Flag {
    Arc::new(f)
}

/// An event handler (Leptos attaches each handler type through its own copy of the listener
/// code; these share one per event).
pub type Handler<E> = Box<dyn FnMut(E)>;

/// `f` as a `click` handler.
pub fn on_click(f: impl FnMut(MouseEvent) + 'static) -> Handler<MouseEvent> {
    Box::new(f)
}

/// `f` as a `change` or `input` handler.
pub fn on_change(f: impl FnMut(Event) + 'static) -> Handler<Event> {
    Box::new(f)
}
