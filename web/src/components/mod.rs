//! One component per file. Each reads the [`AppState`](crate::state::AppState) from context.

mod config_editor;
mod controls;
mod counters;
mod counts_table;
mod footer;
mod instances;
mod run_buttons;
mod service_card;
mod service_cards;
mod store_panel;
mod timeline;
mod usage_chart;

pub use config_editor::ConfigEditor;
pub use controls::Controls;
pub use counters::Counters;
pub use counts_table::{Columns, CountsTable, Rows};
pub use footer::Footer;
pub use instances::InstancesPanel;
pub use run_buttons::RunButtons;
pub use service_card::ServiceCard;
pub use service_cards::ServiceCards;
pub use store_panel::StorePanel;
pub use timeline::TransitionTimeline;
pub use usage_chart::UsageChart;
