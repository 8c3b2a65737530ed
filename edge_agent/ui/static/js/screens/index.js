// Every screen module, imported for its register() call. Add new screens here.
import "./home.js";
import "./tracking.js";
import "./support.js";
import "./info.js";
import "./feedback.js";
import "./home-visit.js";
